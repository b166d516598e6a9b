"""No SQL built from strings in src/: a static (ast) scan, checked against bad samples so it is not vacuous.

Flagged:
- a call to `execute`, `executemany`, `executescript`, `exec_driver_sql`, `text`, `sa.text` or
  `sqlalchemy.text` whose first argument is an f-string, a `%`-formatted string, a `.format(...)` call,
  a `str.join`, or a concatenation with a string, either directly or through a local variable assigned
  such a value in the same scope;
- any SQL-looking string literal (SELECT/INSERT/UPDATE/DELETE/CREATE/DROP ... FROM/INTO/SET/TABLE/WHERE)
  that is formatted: part of an f-string, `%`-formatted, `.format`-ed or concatenated.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STORE = SRC / "oxeo_flows" / "store.py"

SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql"}
SQL_MODULES = {"sa", "sqlalchemy"}
# Upper-case keywords anywhere in one literal, or tight lower-case phrases (prose such as "create it
# with ... set" must not count).
_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP)\b.*\b(FROM|INTO|SET|TABLE|WHERE)\b"
    r"|(?i:\bselect\s+[\w*.,\s()]+?\s+from\b|\binsert\s+into\b|\bdelete\s+from\b"
    r"|\bupdate\s+\w+\s+set\b|\b(create|drop)\s+table\b)",
    re.S,
)


def _is_str(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def _formatting(node: ast.AST) -> str | None:
    """How `node` builds a string from parts at run time, or None."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and (_is_str(node.left)):
        return "%-formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        if _is_str(node.left) or _is_str(node.right) or _formatting(node.left) or _formatting(node.right):
            return "string concatenation"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "format":
            return ".format()"
        if node.func.attr == "join" and _is_str(node.func.value):
            return "str.join"
    return None


def _literal_text(node: ast.AST) -> str:
    return "\n".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


def _sql_callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name) and func.id in SQL_CALLS | {"text"}:
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr in SQL_CALLS:
            return func.attr
        if func.attr == "text" and isinstance(func.value, ast.Name) and func.value.id in SQL_MODULES:
            return f"{func.value.id}.text"
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.findings: list[str] = []
        self.scopes: list[dict[str, str | None]] = [{}]  # per scope: variable -> how it was formatted

    def report(self, node: ast.AST, message: str) -> None:
        self.findings.append(f"{self.filename}:{getattr(node, 'lineno', 0)}: {message}")

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.scopes.append({})
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def lookup(self, name: str) -> str | None:
        """How the innermost assignment of `name` formatted it (None: not a formatted string)."""
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _assign(self, targets: list[ast.expr], value: ast.AST | None, augmented: bool = False) -> None:
        how = _formatting(value) if value is not None else None
        if how is None and isinstance(value, ast.Name):
            how = self.lookup(value.id)
        if (
            augmented
            and how is None
            and value is not None
            and (_is_str(value) or isinstance(value, ast.Name))
        ):
            how = "string concatenation (+=)"
        for t in targets:
            if isinstance(t, ast.Name) and (how or not augmented):
                self.scopes[-1][t.id] = how

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        self._assign(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self._assign([node.target], node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        if isinstance(node.op, ast.Add | ast.Mod):
            self._assign([node.target], node.value, augmented=True)

    def visit_Call(self, node: ast.Call) -> None:
        callee = _sql_callee(node.func)
        if callee and node.args:
            arg = node.args[0]
            how = _formatting(arg)
            if how:
                self.report(node, f"{callee}() called with SQL built by {how}")
            elif isinstance(arg, ast.Name) and (how := self.lookup(arg.id)):
                self.report(node, f"{callee}({arg.id}) where {arg.id} is built by {how}")
        self._check_literal(node)
        self.generic_visit(node)

    def _check_literal(self, node: ast.AST) -> None:
        how = _formatting(node)
        if how and _SQL.search(_literal_text(node)):
            self.report(node, f"SQL literal used in {how}")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._check_literal(node)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._check_literal(node)
        self.generic_visit(node)


def scan(source: str, filename: str = "<sample>") -> list[str]:
    s = _Scanner(filename)
    s.visit(ast.parse(source, filename))
    return sorted(set(s.findings))


def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10 and STORE in files
    return files


# sample -> (code, a fragment the finding must contain): each kind of check is exercised on its own
BAD = {
    "execute f-string": (
        "conn.execute(f'SELECT * FROM t WHERE id = {x}')",
        "execute() called with SQL built by f-string",
    ),
    "execute %": ("cur.execute('SELECT * FROM t WHERE id = %s' % x)", "by %-formatting"),
    "execute % tuple": ("cur.execute('SELECT * FROM t WHERE a = %s' % (a,))", "by %-formatting"),
    "execute format": ("conn.execute('SELECT * FROM t WHERE id = {}'.format(x))", "by .format()"),
    "execute concat": ("conn.execute('SELECT * FROM t WHERE id = ' + x)", "by string concatenation"),
    "execute concat right": ("conn.execute(prefix + ' WHERE id = 1')", "execute() called with SQL built"),
    "execute nested concat": ("conn.execute(a + b + f'{c}')", "execute() called with SQL built"),
    "executemany f-string": ("cur.executemany(f'INSERT INTO {t} VALUES (?)', rows)", "executemany() called"),
    "executescript %": ("cur.executescript('DROP TABLE %s;' % t)", "executescript() called"),
    "exec_driver_sql f-string": ("engine.exec_driver_sql(f'PRAGMA {name}')", "exec_driver_sql() called"),
    "exec_driver_sql concat": ("conn.exec_driver_sql('PRAGMA a=' + str(ms))", "exec_driver_sql() called"),
    "text f-string": (
        "from sqlalchemy import text\nq = text(f'x = {x}')",
        "text() called with SQL built by f",
    ),
    "sa.text format": ("q = sa.text('a = {}'.format(v))", "sa.text() called with SQL built by .format()"),
    "sqlalchemy.text concat": ("q = sqlalchemy.text('x ' + name)", "sqlalchemy.text() called with SQL built"),
    "sa.text join": ("q = sa.text(' '.join(['a', cond]))", "sa.text() called with SQL built by str.join"),
    "via variable": ("def f(conn, x):\n    sql = f'{x}'\n    return conn.execute(sql)", "where sql is built"),
    "via += variable": ("def f(cur, x):\n    q = 'a'\n    q += x\n    cur.execute(q)", "where q is built"),
    "via module variable": ("Q = 'a' + B\ndef f(cur):\n    cur.execute(Q)", "where Q is built"),
    "via alias": ("def f(cur, x):\n    a = '%s' % x\n    b = a\n    cur.execute(b)", "where b is built"),
    "in a method": ("class A:\n    def run(self, t):\n        self.c.execute(f'{t}')", "execute() called"),
    "SQL literal in f-string": (
        "query = f'INSERT INTO observations VALUES ({row})'",
        "SQL literal used in f-string",
    ),
    "SQL literal %": ("query = 'SELECT a FROM t WHERE b = %s' % b", "SQL literal used in %-formatting"),
    "SQL literal format": ("query = 'CREATE TABLE {} (a int)'.format(name)", "SQL literal used in .format()"),
    "SQL literal concat": ("query = 'DELETE FROM t WHERE id = ' + str(i)", "SQL literal used in string conc"),
    "SQL literal UPDATE SET": ("query = f'UPDATE t SET a = {v}'", "SQL literal used in f-string"),
    "lower-case SQL in f-string": ("query = f'select * from {table}'", "SQL literal used in f-string"),
    "SQL literal in an argument": ("log(f'DROP TABLE {t}')", "SQL literal used in f-string"),
}

GOOD = {
    "bound parameters": "conn.execute(sa.text('SELECT * FROM t WHERE id = :id'), {'id': x})",
    "constant pragma": "cur.execute('PRAGMA foreign_keys=ON')",
    "implicit literal concatenation": "cur.execute('SELECT a ' 'FROM t WHERE b = ?', (b,))",
    "core statement": "conn.execute(sa.select(t).where(t.c.id == x))",
    "statement object": "conn.execute(stmt, rows)",
    "prose f-string": "msg = f'create it with `oxeo-flows secrets set {name}` and update {n} rows'",
    "variable reassigned to constant": (
        "def f(cur, x):\n    q = f'{x}'\n    q = 'SELECT a FROM t WHERE b = ?'\n    cur.execute(q, (x,))"
    ),
    "other .text": "body = response.text(f'{x}')",
    "path concat, not SQL": "p = root + '/archive'",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_scanner_flags_bad_sample(name: str) -> None:
    code, expected = BAD[name]
    findings = scan(code)
    assert any(expected in f for f in findings), (code, findings)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_scanner_accepts_good_sample(name: str) -> None:
    assert scan(GOOD[name]) == []


def test_no_sql_built_from_strings_in_src() -> None:
    findings = [f for path in _sources() for f in scan(path.read_text(), str(path.relative_to(SRC)))]
    assert findings == []


def test_a_bad_sample_inside_a_project_file_is_caught() -> None:
    """The scan of a real file plus one bad line fails: the project scan can see what it claims to see."""
    source = STORE.read_text()
    bad = "\n\ndef _bad(conn, aoi_id):\n    conn.exec_driver_sql(f'DELETE FROM aoi WHERE id={aoi_id}')\n"
    line = len((source + bad).splitlines())
    findings = scan(source + bad, "store.py")
    assert findings and all(f.startswith(f"store.py:{line}:") for f in findings), findings


_PRAGMA = re.compile(r"(?i)\bpragma\b")


def _pragma_args(tree: ast.AST) -> tuple[list[str], list[int]]:
    """(constant PRAGMA statements passed to SQL calls, lines where a PRAGMA string is formatted)."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    constants, dynamic = [], []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and _PRAGMA.search(node.value)
        ):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Call) and _sql_callee(parent.func) and parent.args[:1] == [node]:
            constants.append(node.value)
        elif isinstance(parent, ast.JoinedStr | ast.BinOp | ast.Attribute | ast.FormattedValue):
            dynamic.append(node.lineno)  # part of an f-string, a % / + expression or a .format / .join call
    return constants, dynamic


def test_store_pragmas_are_constant_strings() -> None:
    constants, dynamic = _pragma_args(ast.parse(STORE.read_text()))
    assert constants, "store.py should set its SQLite pragmas"
    assert all(re.fullmatch(r"PRAGMA\s+\w+(\s*=\s*\w+)?", c) for c in constants), constants
    assert dynamic == []
    # ... and the check sees non-constant pragmas
    for bad in (
        "cur.execute(f'PRAGMA busy_timeout={ms}')",
        "cur.execute('PRAGMA busy_timeout=%d' % ms)",
        "cur.execute('PRAGMA {}={}'.format(k, v))",
        "p = 'PRAGMA foreign_keys=' + v\ncur.execute(p)",
    ):
        assert _pragma_args(ast.parse(bad))[1], bad
