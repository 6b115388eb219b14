"""Fixtures of the Python scenario test: gRPC stubs generated from proto/ with grpcio-tools when
the test runs (into a temporary directory, nothing generated is kept), and a real podiumd on an
ephemeral loopback port with a temporary data directory, stopped at the end even on failure.

podiumd is the binary named by $PODIUMD, or the workspace's target/debug/podiumd
(`cargo build --bin podiumd`)."""

import importlib
import importlib.resources
import os
import pathlib
import select
import subprocess
import sys
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
# How long the test waits for something that should happen at once before it gives up.
PATIENCE_SECONDS = 30


def generate_stubs(out: pathlib.Path) -> types.SimpleNamespace:
    """Runs grpcio-tools' protoc on every proto/podium/v1/*.proto and imports the result. Returns
    one namespace with every message, enum value and stub, like the Rust client's `pb`."""
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("podium/v1/*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_DIR / 'podium/v1'}")
    # grpcio-tools ships the well-known types (google/protobuf/timestamp.proto).
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"grpcio-tools could not compile {PROTO_DIR}: see the errors above")
    sys.path.insert(0, str(out))
    pb = types.SimpleNamespace()
    for proto in protos:
        for suffix in ("_pb2", "_pb2_grpc"):
            module = importlib.import_module(f"podium.v1.{proto.stem}{suffix}")
            for name, value in vars(module).items():
                if name.startswith("_") or name == "DESCRIPTOR":
                    continue
                if isinstance(value, types.ModuleType):
                    continue
                if getattr(pb, name, value) != value:
                    raise RuntimeError(f"{name} is defined twice in the generated code")
                setattr(pb, name, value)
    return pb


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    namespace = generate_stubs(out)
    yield namespace
    sys.path.remove(str(out))


class Podiumd:
    """A running podiumd with its own data directory."""

    def __init__(self, process: subprocess.Popen, addr: str, data_dir: pathlib.Path):
        self.process = process
        self.addr = addr
        self.data_dir = data_dir

    def admin_token(self) -> str:
        """The admin token podiumd generated on first start (readable by its owner only)."""
        return (self.data_dir / "admin.token").read_text().strip()


def podiumd_binary() -> pathlib.Path:
    binary = pathlib.Path(os.environ.get("PODIUMD", REPO / "target" / "debug" / "podiumd"))
    if not binary.is_file():
        raise RuntimeError(
            f"no podiumd at {binary}: build it with `cargo build --bin podiumd` "
            "or name it with $PODIUMD"
        )
    return binary


@pytest.fixture
def podiumd(tmp_path):
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [
            str(podiumd_binary()),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            # Open streams end at once when the test stops podiumd.
            "--drain-timeout",
            "1",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("PODIUM_TEST_LOG", "warn")},
    )
    try:
        # podiumd binds first, then prints its address: "podiumd listening on 127.0.0.1:PORT".
        ready, _, _ = select.select([process.stdout], [], [], PATIENCE_SECONDS)
        line = process.stdout.readline() if ready else ""
        prefix = "podiumd listening on "
        if not line.startswith(prefix):
            raise RuntimeError(
                f"podiumd did not start (exit status {process.poll()}); its first line was {line!r}"
            )
        yield Podiumd(process, line[len(prefix) :].strip(), data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=PATIENCE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"podiumd did not exit within {PATIENCE_SECONDS} s of SIGTERM"
            ) from None
