"""The library's layout (docs/architecture.md): no import circles between its top-level
modules (folders), no library file over ~500 lines, and only the adapters name SDK types."""

import pathlib
import re

SRC = pathlib.Path(__file__).resolve().parents[2] / "shared" / "src"
USE = re.compile(r"\bcrate::([a-z_]+)")


def top_module(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code_lines(path: pathlib.Path):
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue  # doc links are not imports
        yield line


def module_graph():
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.rs"):
        if path.parts[-2] == "bin" or path.name == "lib.rs":
            continue
        me = top_module(path)
        deps = graph.setdefault(me, set())
        for line in code_lines(path):
            for other in USE.findall(line):
                if other != me:
                    deps.add(other)
    return graph


def find_cycle(graph):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_circle_between_modules():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checker_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_library_file_over_500_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.rs")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"library files over 500 lines: {long}"


def test_only_adapters_name_sdk_types():
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.rs")
        if top_module(p) not in ("aws", "bootstrap")
        and any("aws_sdk_" in line for line in code_lines(p))
    ]
    assert not offenders, f"SDK types outside shared/src/aws: {offenders}"
