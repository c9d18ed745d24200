"""How users install it: the wheel and sdist, the Claude Desktop bundle, and the registry metadata, all in step."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client, StdioServerParameters

import server
import tools
from scripts import build_mcpb
from server.app import create_app
from server.config import Settings
from server.sandbox import Emulator, EmulatorState, catalog
from server.sandbox.runner import seed_sandbox
from server.tooling.spec import DEFAULT_TOOLSETS
from tests.results import data
from tests.test_stdio import params

ROOT = Path(__file__).parent.parent
MANIFEST = json.loads((ROOT / "mcpb" / "manifest.json").read_text())
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOOLS = {spec.name for spec in tools.ALL}
DEFAULT = {spec.name for spec in tools.ALL if spec.toolset in DEFAULT_TOOLSETS}  # what a server offers by default
CONTAINERFILE = (ROOT / "Containerfile").read_text()


def containerfile_arg(name: str) -> str:
    """The default of a build argument in the Containerfile (the last stage's, if several declare it)."""
    found = re.findall(rf"^ARG {name}=(\S+)$", CONTAINERFILE, re.MULTILINE)
    assert found, f"no ARG {name}=... in the Containerfile"
    return str(found[-1])


def uv() -> str:
    """The uv that runs this suite (`uv run` says where it is), else the one on PATH or the bootstrapped one."""
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".bootstrap" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed: run `make sync`"
    return found


def run(*command: str | Path, cwd: Path | None = None) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # the suite's own venv must not stand in for the fresh one
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


async def list_and_call(server_params: StdioServerParameters) -> set[str]:
    """Start a server as a client would, list its tools, and call one that reaches the upstream."""
    with anyio.fail_after(120):  # a first start may install the locked dependencies
        async with Client(server_params) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert data(await client.call_tool("list_workspaces", {}))["workspaces"]
            return names


def test_versions_agree_everywhere() -> None:
    version = PYPROJECT["project"]["version"]
    assert server.__version__ == version
    assert create_app(Settings()).version == version
    assert MANIFEST["version"] == version
    assert SERVER_JSON["version"] == version
    # Packages from a registry carry a version; an OCI image carries it as its tag, and the image's label.
    assert [p.get("version") for p in SERVER_JSON["packages"]] == [version, None]
    assert [p["identifier"].rpartition(":")[2] for p in SERVER_JSON["packages"] if p["registryType"] == "oci"] == [
        version
    ]
    assert containerfile_arg("VERSION") == version


def test_server_json_follows_the_registry_schema_and_names_the_readme_marker() -> None:
    schema = json.loads((ROOT / "docs" / "registry" / "server.schema.json").read_text())
    assert SERVER_JSON["$schema"] == schema["$id"]
    assert "/2025-12-11/" in schema["$id"]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    validator.validate(SERVER_JSON)
    # The registry proves ownership of a PyPI package by this marker in its README (the long description).
    assert f"mcp-name: {SERVER_JSON['name']}" in (ROOT / PYPROJECT["project"]["readme"]).read_text()
    package = SERVER_JSON["packages"][0]
    assert (package["registryType"], package["identifier"], package["runtimeHint"]) == ("pypi", "flashsnap-mcp", "uvx")
    secrets = {v["name"] for v in package["environmentVariables"] if v.get("isSecret")}
    assert secrets == {"NEUROFLASH_CLIENT_SECRET", "NEURALSNAP_API_KEY"}
    image = SERVER_JSON["packages"][1]
    assert (image["registryType"], image["runtimeHint"], image["transport"]) == ("oci", "docker", {"type": "stdio"})
    assert image["environmentVariables"] == package["environmentVariables"]
    # A broken copy is refused: the validator is really checking.
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**SERVER_JSON, "name": "no slash"})


def test_the_image_says_what_its_registry_entry_and_the_compose_file_expect() -> None:
    """The Containerfile's defaults, server.json's OCI entry and deploy/ name one image, one state directory."""
    image = next(p for p in SERVER_JSON["packages"] if p["registryType"] == "oci")
    # The registry checks the image's label against the server's name.
    assert containerfile_arg("SERVER_NAME") == SERVER_JSON["name"]
    assert 'LABEL io.modelcontextprotocol.server.name="${SERVER_NAME}"' in CONTAINERFILE
    state_dir = re.search(r"FLASHSNAP_STATE_DIR=(\S+)", CONTAINERFILE)
    assert state_dir is not None
    assert f'VOLUME ["{state_dir[1]}"]' in CONTAINERFILE
    (volume,) = [a["value"] for a in image["runtimeArguments"] if a["name"] == "--volume"]
    assert volume.endswith(f":{state_dir[1]}")
    assert 'ENTRYPOINT ["flashsnap-mcp"]' in CONTAINERFILE
    assert "flashsnap-mcp" in PYPROJECT["project"]["scripts"]  # the console script the ENTRYPOINT runs
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert f"${{FLASHSNAP_IMAGE:-{image['identifier']}}}" in compose
    assert f"{state_dir[1]}" in (ROOT / "deploy" / "compose.sandbox.yaml").read_text()
    # The build context is an allow-list: no virtualenv, env file or test data goes into a build.
    ignored = (ROOT / ".containerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1 :][:5] == [
        "!pyproject.toml",
        "!uv.lock",
        "!README.md",
        "!server/",
        "!tools/",
    ]


def test_the_bundle_manifest_lists_the_tools_and_keeps_secrets_sensitive() -> None:
    assert MANIFEST["server"]["type"] == "uv"
    listed = {tool["name"]: tool["description"] for tool in MANIFEST["tools"]}
    assert set(listed) == TOOLS
    for spec in tools.ALL:
        assert listed[spec.name] == inspect.cleandoc(spec.fn.__doc__ or "").splitlines()[0]
    config = MANIFEST["user_config"]
    assert {k for k, v in config.items() if v.get("sensitive")} == {"neuroflash_client_secret", "neuralsnap_api_key"}
    assert config["neuroflash_workspace_id"]["required"] is False
    env = MANIFEST["server"]["mcp_config"]["env"]
    assert env["NEUROFLASH_CLIENT_SECRET"] == "${user_config.neuroflash_client_secret}"
    assert env["NEURALSNAP_API_KEY"] == "${user_config.neuralsnap_api_key}"


def substitute(value: str, dirname: Path, user_config: dict[str, str]) -> str:
    """What the host does to the manifest's strings: ${__dirname} and ${user_config.KEY}."""
    value = value.replace("${__dirname}", str(dirname))
    return re.sub(r"\$\{user_config\.(\w+)\}", lambda m: user_config.get(m.group(1), ""), value)


def test_the_bundle_packs_unpacks_and_starts_as_its_manifest_says(tmp_path: Path) -> None:
    bundle = build_mcpb.build(tmp_path / "flashsnap-mcp.mcpb")
    unpacked = tmp_path / "installed"
    build_mcpb.mcpb("unpack", bundle, unpacked)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert (unpacked / manifest["server"]["entry_point"]).is_file()
    # What a user types into Claude Desktop's settings for the bundle; the URLs point at the emulator.
    user_config = {
        "neuroflash_client_id": catalog.DEMO_CLIENT_ID,
        "neuroflash_client_secret": catalog.DEMO_CLIENT_SECRET,
        "neuroflash_workspace_id": "",
        "neuralsnap_api_key": catalog.DEMO_API_KEY,
        "read_only": "true",
    }
    mcp_config = manifest["server"]["mcp_config"]
    with Emulator(seed_sandbox(EmulatorState())) as emulator:
        urls = {k: v for k, v in emulator.environment().items() if k.endswith("_URL")}
        listed = start_bundle(tmp_path, unpacked, mcp_config, user_config, urls)
    assert listed == DEFAULT - {"generate", "snapshot"}  # the read_only setting reached the server


def start_bundle(
    cwd: Path, unpacked: Path, mcp_config: dict[str, Any], user_config: dict[str, str], urls: dict[str, str]
) -> set[str]:
    command = uv() if mcp_config["command"] == "uv" else mcp_config["command"]
    env = {**(params().env or {}), **urls, "UV_PYTHON_DOWNLOADS": "never"}
    env.update({k: substitute(v, unpacked, user_config) for k, v in mcp_config["env"].items()})
    env.pop("VIRTUAL_ENV", None)
    args = [substitute(arg, unpacked, user_config) for arg in mcp_config["args"]]
    return anyio.run(list_and_call, StdioServerParameters(command=command, args=args, env=env, cwd=cwd))


def test_the_wheel_installs_into_a_fresh_venv_and_serves_the_sandbox(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(uv(), "build", "--no-python-downloads", "-o", dist, ROOT)
    wheel = next(dist.glob("flashsnap_mcp-*.whl"))
    sdist = next(dist.glob("flashsnap_mcp-*.tar.gz"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "server/sandbox/runner.py",
        "server/sandbox/neuralsnap_app.py",
        "server/cli/check.py",
        "tools/generate.py",
    } <= in_wheel
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "uv.lock", "server/sandbox/state.py", "tools/snapshot.py"} <= in_sdist
    # A fresh environment with the locked dependencies and nothing from this checkout.
    venv = tmp_path / "venv"
    run(uv(), "venv", "--python", sys.executable, venv)
    requirements = tmp_path / "requirements.txt"
    run(uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-o", requirements, cwd=ROOT)
    run(uv(), "pip", "install", "--python", venv / "bin" / "python", "-r", requirements, wheel)
    command = venv / "bin" / "flashsnap-mcp"
    env: dict[str, Any] = params().env or {}
    listed = anyio.run(
        list_and_call, StdioServerParameters(command=str(command), args=["--sandbox"], env=env, cwd=tmp_path)
    )
    assert listed == DEFAULT
    where = run(venv / "bin" / "python", "-c", "import server; print(server.__file__)", cwd=tmp_path)
    assert where.startswith(str(venv))
