"""deploy/Dockerfile and .dockerignore: slim pinned base, non-root user, health check on
/healthz without curl, the HTTP port and the media UDP range exposed, sources that the build
context really contains."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in joined]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(n for n, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def env_of_final_stage() -> dict[str, str]:
    env = {}
    for op, args in final_stage():
        if op == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def test_base_image_is_slim_python_311_pinned_to_a_patch_release() -> None:
    args = dict(a.split("=", 1) for op, a in instructions() if op == "ARG" and "=" in a)
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image
    assert all(a.startswith("${PYTHON_IMAGE}") for op, a in instructions() if op == "FROM")


def test_runs_as_a_non_root_user() -> None:
    users = [a for op, a in final_stage() if op == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_health_check_probes_healthz_with_python() -> None:
    checks = [a for op, a in final_stage() if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "urllib" in checks[0] and "curl" not in checks[0]


def test_exposes_http_and_the_media_udp_range() -> None:
    exposed = " ".join(a for op, a in final_stage() if op == "EXPOSE").split()
    env = env_of_final_stage()
    assert "8080/tcp" in exposed and env["TONGXIN_PORT"] == "8080"
    assert f"{env['TONGXIN_UDP_PORT_MIN']}-{env['TONGXIN_UDP_PORT_MAX']}/udp" in exposed


def test_starts_tongxin_serve_on_every_interface() -> None:
    ops = dict(final_stage())
    assert ops["ENTRYPOINT"] == '["tongxin"]'
    assert ops["CMD"] == '["serve", "--host", "0.0.0.0"]'


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
        or path.startswith(p.rstrip("/") + "/")
        for p in dockerignore_patterns()
    )  # fmt: skip


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    sources = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            sources.extend(args.split()[:-1])
    assert {"pyproject.toml", "README.md", "broker", "signaling", "media", "web"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f".dockerignore drops {source}"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (".git", ".venv", "tests", "var", "deploy/.env", "signaling/__pycache__"):
        assert ignored(path), f"{path} would be sent to the build"
