"""Static checks of the Dockerfile and .dockerignore (offline: no Docker engine needed).

Each check is a function returning a list of problems (empty when fine). The real files must give no
problems, and every check is also run against small bad Dockerfiles to show that it can fail.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

BUILDER = "builder"
# Packages a pip command may name without them being project dependencies.
PIP_TOOLING = {"pip", "setuptools", "wheel"}
SECRET_WORDS = ("TOKEN", "KEY", "PASSWORD", "PASSWD", "SECRET", "CREDENTIAL")
SECRET_FILES = (".env", ".env.*", "*.pem", "*.key", "*credentials*", "id_rsa*", ".netrc")
ROOT_USERS = {"root", "0"}


# --- parsing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str  # upper case
    args: str


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class PipCommand:
    subcommand: str  # install, wheel, download
    options: dict[str, list[str]]  # long option name -> values ("" for flags)
    positionals: list[str]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with backslash continuations joined and comment lines dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and (not stripped or stripped.startswith("#")):
            continue  # comments and blank lines inside a continuation are skipped by Docker too
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        joined = " ".join(part.strip() for part in buf)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = []
    if buf:
        joined = " ".join(part.strip() for part in buf)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            tokens = [t for t in ins.args.split() if not t.startswith("--")]
            name = tokens[2] if len(tokens) >= 3 and tokens[1].lower() == "as" else None
            stages.append(Stage(len(stages), tokens[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def parse(text: str) -> list[Stage]:
    return split_stages(parse_dockerfile(text))


def split_flags(args: str) -> tuple[list[str], str]:
    """Leading `--flag=value` tokens of RUN/COPY/ADD, and the rest."""
    flags: list[str] = []
    rest = args
    while True:
        m = re.match(r"(--\S+)\s*", rest)
        if not m:
            return flags, rest
        flags.append(m.group(1))
        rest = rest[m.end() :]


def flag_values(flags: list[str], name: str) -> list[str]:
    return [f.split("=", 1)[1] for f in flags if f.startswith(f"--{name}=")]


def mount_specs(flags: list[str]) -> list[dict[str, str]]:
    specs = []
    for value in flag_values(flags, "mount"):
        spec = dict(part.split("=", 1) if "=" in part else (part, "") for part in value.split(","))
        specs.append(spec)
    return specs


def shell_commands(command: str) -> list[list[str]]:
    """Simple commands of a shell string: split on && || ; | & and parentheses, redirections dropped."""
    if command.startswith("["):
        return [json.loads(command)]
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip_next = False
    for tok in lex:
        if skip_next:
            skip_next = False
        elif tok in {"&&", "||", ";", "|", "&", "(", ")", ";;"}:
            commands.append([])
        elif tok in {">", ">>", "<", ">&", "&>", "<<", "2>"}:
            skip_next = True
        else:
            commands[-1].append(tok)
    # Drop leading VAR=value assignments.
    cleaned = []
    for cmd in commands:
        while cmd and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", cmd[0]):
            cmd = cmd[1:]
        if cmd:
            cleaned.append(cmd)
    return cleaned


PIP_VALUE_OPTIONS = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
    "-t": "--target",
    "-i": "--index-url",
    "-f": "--find-links",
    "-w": "--wheel-dir",
    "-d": "--dest",
    "-C": "--config-settings",
}
PIP_LONG_VALUE_OPTIONS = {
    *PIP_VALUE_OPTIONS.values(),
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--root",
    "--prefix",
    "--src",
    "--upgrade-strategy",
    "--progress-bar",
    "--root-user-action",
    "--report",
    "--extra-index-url",
    "--no-binary",
    "--only-binary",
    "--global-option",
    "--build-option",
    "--cache-dir",
    "--log",
    "--proxy",
    "--retries",
    "--timeout",
    "--exists-action",
    "--trusted-host",
    "--cert",
    "--client-cert",
    "--python",
    "--group",
}


def pip_command(tokens: list[str]) -> PipCommand | None:
    """The pip install/wheel/download invocation in `tokens`, if it is one."""
    if not tokens:
        return None
    exe = tokens[0].rsplit("/", 1)[-1]
    if re.fullmatch(r"pip(\d+(\.\d+)?)?", exe):
        rest = tokens[1:]
    elif re.fullmatch(r"python(\d+(\.\d+)?)?", exe) and tokens[1:3] == ["-m", "pip"]:
        rest = tokens[3:]
    elif exe == "uv" and tokens[1:2] == ["pip"]:
        rest = tokens[2:]
    else:
        return None
    options: dict[str, list[str]] = {}
    positionals: list[str] = []
    subcommand = None
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("-") and tok != "-":
            name, eq, value = tok.partition("=")
            name = PIP_VALUE_OPTIONS.get(name, name)
            if not eq and name in PIP_LONG_VALUE_OPTIONS:
                value = rest[i + 1] if i + 1 < len(rest) else ""
                i += 1
            if name == "--editable":
                positionals.append(value)
            else:
                options.setdefault(name, []).append(value)
        elif subcommand is None:
            subcommand = tok
        else:
            positionals.append(tok)
        i += 1
    if subcommand not in {"install", "wheel", "download"}:
        return None
    return PipCommand(subcommand, options, positionals)


def pip_commands(instructions: list[Instruction]) -> list[tuple[Instruction, PipCommand]]:
    found = []
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        _, command = split_flags(ins.args)
        for tokens in shell_commands(command):
            pip = pip_command(tokens)
            if pip is not None:
                found.append((ins, pip))
    return found


def copy_parts(ins: Instruction) -> tuple[list[str], list[str], str]:
    """Flags, sources and destination of a COPY/ADD instruction."""
    flags, rest = split_flags(ins.args)
    paths = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return flags, paths[:-1], paths[-1] if paths else ""


def normalise(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    m = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return normalise(m.group(1)) if m else None


def is_path_or_url(arg: str) -> bool:
    return arg.startswith((".", "/", "~", "$")) or "://" in arg or "/" in arg or arg.endswith(".whl")


def clean_path(p: str) -> str:
    p = p.strip()
    while p.startswith("./"):
        p = p[2:]
    return p.rstrip("/") or "."


def env_names(ins: Instruction) -> list[str]:
    """Variable names set by an ENV or ARG instruction (both `A=1 B=2` and legacy `ENV A 1`)."""
    tokens = shlex.split(ins.args)
    if not tokens:
        return []
    if ins.keyword == "ENV" and "=" not in tokens[0]:
        return [tokens[0]]
    return [t.split("=", 1)[0] for t in tokens]


def user_name(ins: Instruction) -> str:
    return ins.args.split(":", 1)[0].strip()


def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


def builder_stage(stages: list[Stage]) -> Stage | None:
    return next((s for s in stages[:-1] if s.name == BUILDER), None)


def load_pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


# --- checks ----------------------------------------------------------------------------------------------


def check_installs_from_metadata(stages: list[Stage], project: dict[str, Any]) -> list[str]:
    """(a) builder wheels `.` from pyproject.toml + src; runtime installs the project from those wheels."""
    problems: list[str] = []
    builder = builder_stage(stages)
    if builder is None:
        return [f"no stage named {BUILDER!r} before the runtime stage"]
    needed = {"pyproject.toml", "src"}
    if isinstance(project.get("readme"), str):
        needed.add(project["readme"])
    copied: set[str] = set()
    for ins in builder.instructions:
        if ins.keyword in {"COPY", "ADD"}:
            flags, sources, _ = copy_parts(ins)
            if flag_values(flags, "from"):
                continue
            copied.update(clean_path(s) for s in sources)
    if missing := needed - copied:
        problems.append(f"builder does not copy {sorted(missing)}")
    if extra := copied - needed:
        problems.append(f"builder copies more than the build needs: {sorted(extra)}")

    wheel_dirs: set[str] = set()
    for _, pip in pip_commands(builder.instructions):
        if pip.subcommand == "wheel" and "." in [clean_path(p) for p in pip.positionals]:
            wheel_dirs.update(clean_path(d) for d in pip.options.get("--wheel-dir", []))
    if not wheel_dirs:
        problems.append("builder has no `pip wheel --wheel-dir DIR .` of the project")

    runtime = final_stage(stages)
    # Where the runtime stage sees the builder's wheel dir: a bind mount or a COPY --from=builder.
    visible: set[str] = set()
    for ins in runtime.instructions:
        if ins.keyword == "RUN":
            flags, _ = split_flags(ins.args)
            for spec in mount_specs(flags):
                source = clean_path(spec.get("source", spec.get("src", "/")))
                if spec.get("from") == BUILDER and source in wheel_dirs:
                    visible.add(clean_path(spec.get("target", spec.get("dst", spec.get("destination", "")))))
        elif ins.keyword == "COPY":
            flags, sources, dest = copy_parts(ins)
            if flag_values(flags, "from") == [BUILDER] and {clean_path(s) for s in sources} & wheel_dirs:
                visible.add(clean_path(dest))
    name = normalise(project["name"])
    installs = [
        pip
        for _, pip in pip_commands(runtime.instructions)
        if pip.subcommand == "install" and name in {requirement_name(p) for p in pip.positionals}
    ]
    if not installs:
        problems.append(f"runtime stage does not `pip install {name}`")
    for pip in installs:
        if "--no-index" not in pip.options:
            problems.append("runtime `pip install` of the project lacks --no-index")
        links = {clean_path(v) for v in pip.options.get("--find-links", [])}
        if not links or not links <= visible:
            problems.append(
                f"runtime installs from {sorted(links)}, not the builder's wheels {sorted(visible)}"
            )
    return problems


def check_no_dependency_drift(stages: list[Stage], project: dict[str, Any]) -> list[str]:
    """(b) every package a pip command names is a declared dependency (PEP 503 names)."""
    declared = {requirement_name(r) for r in project.get("dependencies", [])}
    allowed = declared | PIP_TOOLING | {normalise(project["name"])}
    problems = []
    for stage in stages:
        for ins, pip in pip_commands(stage.instructions):
            for opt in ("--requirement", "--constraint"):
                if opt in pip.options:
                    problems.append(f"line {ins.line}: pip {opt} file cannot be checked against pyproject")
            for arg in pip.positionals:
                if clean_path(arg) == ".":
                    continue
                if is_path_or_url(arg):
                    problems.append(f"line {ins.line}: pip installs a path or URL {arg!r}")
                    continue
                name = requirement_name(arg)
                if name not in allowed:
                    problems.append(f"line {ins.line}: {arg!r} is not in pyproject's dependencies")
    return problems


def check_non_root_user(stages: list[Stage]) -> list[str]:
    """(c) the runtime stage ends as a non-root USER and never switches back to root after one."""
    users = [ins for ins in final_stage(stages).instructions if ins.keyword == "USER"]
    if not users:
        return ["runtime stage has no USER (runs as root)"]
    problems = []
    for ins in users:
        if "$" in user_name(ins):
            problems.append(f"line {ins.line}: USER {ins.args} cannot be checked statically")
    if user_name(users[-1]) in ROOT_USERS:
        problems.append(f"line {users[-1].line}: runtime stage ends as root")
    seen_non_root = False
    for ins in users:
        if user_name(ins) in ROOT_USERS and seen_non_root:
            problems.append(f"line {ins.line}: switches back to root after a non-root USER")
        seen_non_root = seen_non_root or user_name(ins) not in ROOT_USERS
    return problems


def check_no_secrets(stages: list[Stage]) -> list[str]:
    """(d) no ARG/ENV names a secret-looking variable; no COPY/ADD of secret-looking files."""
    problems = []
    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword in {"ARG", "ENV"}:
                for name in env_names(ins):
                    if any(word in name.upper() for word in SECRET_WORDS):
                        problems.append(f"line {ins.line}: {ins.keyword} {name} looks like a secret")
            elif ins.keyword in {"COPY", "ADD"}:
                _, sources, _ = copy_parts(ins)
                for src in sources:
                    base = clean_path(src).rsplit("/", 1)[-1].lower()
                    if any(fnmatch(base, pattern) for pattern in SECRET_FILES):
                        problems.append(f"line {ins.line}: {ins.keyword} of secret-looking file {src!r}")
    return problems


def check_python_version(stages: list[Stage], project: dict[str, Any]) -> list[str]:
    """(e) every python base image's major.minor is requires-python's lower bound."""
    m = re.search(r"(?:>=|~=|==)\s*(\d+)\.(\d+)", project.get("requires-python", ""))
    if not m:
        return ["pyproject has no requires-python lower bound"]
    wanted = f"{m.group(1)}.{m.group(2)}"
    names = {s.name for s in stages if s.name}
    problems = []
    pythons = 0
    for stage in stages:
        if stage.base in names:
            continue
        image, _, tag = stage.base.partition("@")[0].rsplit("/", 1)[-1].partition(":")
        if image != "python":
            continue
        pythons += 1
        v = re.match(r"(\d+)\.(\d+)", tag)
        if not v or f"{v.group(1)}.{v.group(2)}" != wanted:
            problems.append(f"base image {stage.base} is not python {wanted} (requires-python)")
    if not pythons:
        problems.append("no python base image")
    return problems


def check_multi_stage(stages: list[Stage]) -> list[str]:
    """(g) at least two FROM lines, and the runtime stage takes something from the builder."""
    if len(stages) < 2:
        return [f"{len(stages)} FROM line(s); expected a builder and a runtime stage"]
    if builder_stage(stages) is None:
        return [f"no stage named {BUILDER!r} before the runtime stage"]
    for ins in final_stage(stages).instructions:
        flags = split_flags(ins.args)[0] if ins.keyword in {"COPY", "RUN"} else []
        if ins.keyword == "COPY" and flag_values(flags, "from") == [BUILDER]:
            return []
        if ins.keyword == "RUN" and any(spec.get("from") == BUILDER for spec in mount_specs(flags)):
            return []
    return ["runtime stage takes nothing from the builder (COPY --from / RUN --mount from=)"]


def check_runtime_settings(stages: list[Stage], project: dict[str, Any]) -> list[str]:
    """Telemetry off, unbuffered output, WORKDIR, labels, no HEALTHCHECK, CMD runs the project's script."""
    runtime = final_stage(stages)
    problems = []
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    for ins in runtime.instructions:
        if ins.keyword in {"ENV", "LABEL"}:
            tokens = shlex.split(ins.args)
            pairs = [t.split("=", 1) for t in tokens if "=" in t]
            (env if ins.keyword == "ENV" else labels).update({k: v for k, v in pairs})
        if ins.keyword == "HEALTHCHECK" and ins.args.upper() != "NONE":
            problems.append(f"line {ins.line}: unexpected HEALTHCHECK")
    for key, value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}.items():
        if env.get(key) != value:
            problems.append(f"ENV {key}={value} missing")
    if env.get("PYTHONUNBUFFERED") != "1":
        problems.append("ENV PYTHONUNBUFFERED=1 missing")
    for key in ("source", "title", "licenses"):
        if f"org.opencontainers.image.{key}" not in labels:
            problems.append(f"LABEL org.opencontainers.image.{key} missing")
    if labels.get("org.opencontainers.image.licenses") != project.get("license"):
        problems.append("LABEL org.opencontainers.image.licenses differs from pyproject's license")
    workdirs = [ins.args for ins in runtime.instructions if ins.keyword == "WORKDIR"]
    if workdirs[-1:] != ["/opt/oxeo"]:
        problems.append("runtime WORKDIR is not /opt/oxeo")
    cmds = [ins for ins in runtime.instructions if ins.keyword == "CMD"]
    if not cmds or not cmds[-1].args.startswith("["):
        problems.append("no exec-form CMD")
    else:
        cmd = json.loads(cmds[-1].args)
        if cmd[:1] != [next(iter(project.get("scripts", {})), None)]:
            problems.append(f"CMD {cmd} does not run the project's console script")
    return problems


# --- .dockerignore ---------------------------------------------------------------------------------------


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per pattern, in order; the last matching rule wins, as in Docker."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().lstrip("/").rstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((exclude, re.compile(regex)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = clean_path(path).split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a rule on a parent covers children
    ignored = False
    for exclude, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            ignored = exclude
    return ignored


def check_dockerignore(text: str, build_inputs: list[str]) -> list[str]:
    """(f) .git, .venv and .env are excluded, and nothing the build copies is."""
    rules = dockerignore_rules(text)
    problems = [f"{p} is not excluded" for p in (".git", ".venv", ".env") if not is_ignored(p, rules)]
    problems += [f"build input {p} is excluded" for p in build_inputs if is_ignored(p, rules)]
    return problems


def build_inputs() -> list[str]:
    files = [p for p in (ROOT / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files = [p for p in files if not any(part.endswith(".egg-info") for part in p.parts)]
    return ["pyproject.toml", "README.md", *(p.relative_to(ROOT).as_posix() for p in files)]


# --- the real files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    data = load_pyproject()
    return {**data["project"]}


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_installs_project_from_its_own_metadata(stages: list[Stage], project: dict[str, Any]) -> None:
    assert check_installs_from_metadata(stages, project) == []


def test_no_dependency_drift(stages: list[Stage], project: dict[str, Any]) -> None:
    assert check_no_dependency_drift(stages, project) == []


def test_runs_as_non_root(stages: list[Stage]) -> None:
    assert check_non_root_user(stages) == []


def test_no_secrets_baked_in(stages: list[Stage]) -> None:
    assert check_no_secrets(stages) == []


def test_python_matches_requires_python(stages: list[Stage], project: dict[str, Any]) -> None:
    assert check_python_version(stages, project) == []


def test_dockerignore(project: dict[str, Any]) -> None:
    inputs = build_inputs()
    assert any(p.endswith("oxeo_flows/__init__.py") for p in inputs)
    assert check_dockerignore(DOCKERIGNORE.read_text(), inputs) == []


def test_multi_stage(stages: list[Stage]) -> None:
    assert check_multi_stage(stages) == []


def test_runtime_settings(stages: list[Stage], project: dict[str, Any]) -> None:
    assert check_runtime_settings(stages, project) == []


# --- the checks can fail ---------------------------------------------------------------------------------

FAKE_PROJECT: dict[str, Any] = {
    "name": "oxeo-flows",
    "readme": "README.md",
    "requires-python": ">=3.11",
    "license": "MIT",
    "dependencies": ["prefect>=3.4,<4", "pydantic-settings>=2.3", "numpy>=1.26"],
    "scripts": {"oxeo-flows": "oxeo_flows.cli:main"},
}

GOOD = """\
# syntax=docker/dockerfile:1
FROM python:3.11-slim AS builder
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src/ ./src/
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.source="https://example.org/x" \\
      org.opencontainers.image.title="oxeo-flows" org.opencontainers.image.licenses="MIT"
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \\
    PYTHONUNBUFFERED=1
RUN useradd --uid 10001 oxeo && mkdir -p /opt/oxeo && chown oxeo /opt/oxeo
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \\
    pip install --no-cache-dir --no-index --find-links /wheels oxeo-flows
WORKDIR /opt/oxeo
USER oxeo
CMD ["oxeo-flows", "flows"]
"""

INSTALL = "    pip install --no-cache-dir --no-index --find-links /wheels oxeo-flows\n"
ALL_CHECKS = {
    "metadata": lambda s: check_installs_from_metadata(s, FAKE_PROJECT),
    "drift": lambda s: check_no_dependency_drift(s, FAKE_PROJECT),
    "user": check_non_root_user,
    "secrets": check_no_secrets,
    "python": lambda s: check_python_version(s, FAKE_PROJECT),
    "stages": check_multi_stage,
    "settings": lambda s: check_runtime_settings(s, FAKE_PROJECT),
}


@pytest.mark.parametrize("check", sorted(ALL_CHECKS))
def test_good_example_passes(check: str) -> None:
    assert ALL_CHECKS[check](parse(GOOD)) == []


def test_parser_sees_the_good_example() -> None:
    stages = parse(GOOD)
    assert [(s.base, s.name) for s in stages] == [
        ("python:3.11-slim", "builder"),
        ("python:3.11-slim", "runtime"),
    ]
    assert [pip.subcommand for _, pip in pip_commands(stages[1].instructions)] == ["install"]
    assert pip_commands(stages[1].instructions)[0][1].positionals == ["oxeo-flows"]


def test_declared_names_are_compared_pep503_normalised() -> None:
    text = GOOD.replace("USER oxeo", 'RUN python -m pip install "Pydantic_Settings>=2.3" NumPy\nUSER oxeo')
    assert check_no_dependency_drift(parse(text), FAKE_PROJECT) == []


RUNTIME_FROM = "FROM python:3.11-slim AS runtime"
MOUNT = "--mount=type=bind,from=builder,source=/wheels,target=/wheels"
CMD = 'CMD ["oxeo-flows", "flows"]'

# (case, check, text to replace in GOOD, replacement, a fragment of the expected problem)
BAD = [
    # (a) the project is not installed from its own metadata
    ("builder copies the whole context", "metadata", "COPY src/ ./src/", "COPY . .", "more than the build"),
    ("builder misses README", "metadata", "README.md ./", "./", "does not copy ['README.md']"),
    ("no pip wheel of the project", "metadata", "/wheels .", "/wheels prefect", "no `pip wheel"),
    ("runtime install without --no-index", "metadata", "--no-index ", "", "lacks --no-index"),
    (
        "runtime install from an index",
        "metadata",
        INSTALL,
        "    pip install oxeo-flows\n",
        "lacks --no-index",
    ),
    (
        "runtime install from elsewhere",
        "metadata",
        "--find-links /wheels",
        "-f /tmp",
        "installs from ['/tmp']",
    ),
    (
        "runtime retypes dependencies",
        "metadata",
        "/wheels oxeo-flows",
        "/wheels prefect",
        "does not `pip install",
    ),
    # (b) drift
    ("drifted package", "drift", "USER oxeo", "RUN pip install requests\nUSER oxeo", "'requests' is not"),
    (
        "drift among declared",
        "drift",
        "/wheels oxeo-flows",
        "/wheels oxeo-flows numpy 'boto3>=1'",
        "'boto3>=1'",
    ),
    ("requirements file", "drift", "USER oxeo", "RUN pip install -r req.txt\nUSER oxeo", "--requirement"),
    ("package in builder", "drift", "/wheels .", "/wheels . gdal", "'gdal' is not"),
    ("path install", "drift", "/wheels oxeo-flows", "/wheels /tmp/x.whl", "path or URL"),
    # (c) root
    ("no USER", "user", "USER oxeo\n", "", "no USER"),
    ("root USER at the end", "user", CMD, "USER root", "ends as root"),
    ("uid 0 at the end", "user", "USER oxeo", "USER 0:0", "ends as root"),
    (
        "back to root in between",
        "user",
        "USER oxeo",
        "USER oxeo\nUSER root\nRUN id\nUSER oxeo",
        "back to root",
    ),
    # (d) secrets
    ("ENV API_TOKEN", "secrets", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1 API_TOKEN=abc", "ENV API_TOKEN"),
    ("legacy ENV password", "secrets", "USER oxeo", "ENV DB_PASSWORD hunter2\nUSER oxeo", "DB_PASSWORD"),
    ("ARG GITHUB_TOKEN", "secrets", "WORKDIR /build", "ARG GITHUB_TOKEN\nWORKDIR /build", "GITHUB_TOKEN"),
    (
        "ARG secret key",
        "secrets",
        "WORKDIR /build",
        "ARG aws_secret_access_key=x\nWORKDIR /build",
        "aws_secret",
    ),
    ("COPY .env", "secrets", "USER oxeo", "COPY .env /opt/oxeo/.env\nUSER oxeo", "'.env'"),
    ("COPY pem", "secrets", "USER oxeo", "COPY certs/server.pem /etc/\nUSER oxeo", "server.pem"),
    (
        "ADD credentials",
        "secrets",
        "USER oxeo",
        "ADD gcp-credentials.json /x/\nUSER oxeo",
        "credentials.json",
    ),
    # (e) python version
    ("python 3.12 runtime", "python", RUNTIME_FROM, "FROM python:3.12-slim AS runtime", "python:3.12-slim"),
    (
        "python 3.10 builder",
        "python",
        "FROM python:3.11-slim AS builder",
        "FROM python:3.10 AS builder",
        "3.10",
    ),
    ("untagged python", "python", RUNTIME_FROM, "FROM docker.io/library/python AS runtime", "is not python"),
    ("no python image", "python", "python:3.11-slim", "debian:12", "no python base image"),
    ("registry with port", "python", RUNTIME_FROM, "FROM localhost:5000/python:3.12 AS runtime", "3.12"),
    # (g) stages
    ("single stage", "stages", GOOD[: GOOD.index(RUNTIME_FROM)], "", "1 FROM line"),
    ("nothing from the builder", "stages", MOUNT, "--mount=type=cache,target=/x", "takes nothing"),
    ("builder renamed", "stages", "AS builder", "AS build", "no stage named"),
    # other runtime settings
    ("telemetry on", "settings", "DO_NOT_TRACK=1 ", "", "DO_NOT_TRACK"),
    ("healthcheck", "settings", "USER oxeo", "HEALTHCHECK CMD true\nUSER oxeo", "HEALTHCHECK"),
    ("shell-form CMD", "settings", CMD, "CMD oxeo-flows flows", "exec-form"),
    ("other CMD", "settings", CMD, 'CMD ["prefect", "worker", "start"]', "console script"),
    ("no licence label", "settings", ' org.opencontainers.image.licenses="MIT"', "", "licenses missing"),
]


@pytest.mark.parametrize(("check", "old", "new", "expected"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_bad_dockerfile_fails(check: str, old: str, new: str, expected: str) -> None:
    assert old in GOOD, "the mutation does not apply"
    problems = ALL_CHECKS[check](parse(GOOD.replace(old, new)))
    assert any(expected in p for p in problems), problems


def test_copy_from_builder_also_counts_as_multi_stage() -> None:
    text = GOOD.replace(
        "RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \\\n",
        "COPY --from=builder /wheels /tmp/wheels\nRUN \\\n",
    ).replace("--find-links /wheels", "--find-links /tmp/wheels")
    assert check_multi_stage(parse(text)) == []
    assert check_installs_from_metadata(parse(text), FAKE_PROJECT) == []


GOOD_IGNORE = ".git\n.venv\n.env\n**/__pycache__\n"


def test_good_dockerignore_passes() -> None:
    assert check_dockerignore(GOOD_IGNORE, ["pyproject.toml", "README.md", "src/oxeo_flows/cli.py"]) == []


@pytest.mark.parametrize(
    ("text", "inputs"),
    [
        (".git\n", []),
        (".venv\n.env\n", []),
        ("# .git\n.venv\n.env\n", []),
        (".git\n.venv\n.env\n!.venv\n", []),
        (GOOD_IGNORE + "src\n", ["src/oxeo_flows/cli.py"]),
        (GOOD_IGNORE + "*.md\n", ["README.md"]),
        (GOOD_IGNORE + "**/*cli*\n", ["src/oxeo_flows/cli.py"]),
    ],
)
def test_bad_dockerignore_fails(text: str, inputs: list[str]) -> None:
    assert check_dockerignore(text, inputs) != []
