"""Build of the evalctl_client package; the metadata is in pyproject.toml.

The gRPC stubs (evalctl_client.v1) are not in the source tree: build_py generates them from the
repository's proto/ (or $EVALCTL_PROTO_DIR) into the build directory, with build_stubs.py. An
sdist carries a copy of the .proto files so that it builds on its own.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_stubs  # noqa: E402


class BuildPyWithStubs(build_py):
    """build_py, then the generated stubs into <build_lib>/evalctl_client/v1."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            raise SystemExit(
                "evalctl_client does not support editable installs: its stubs are generated into "
                "the build tree. Install it normally, or use the CMake build's package "
                "(<build>/clients/python) on PYTHONPATH")
        out = Path(self.build_lib) / "evalctl_client" / "v1"
        try:
            self._generated = [str(p) for p in build_stubs.generate(out)]
        except build_stubs.StubError as e:
            raise SystemExit(f"evalctl_client: {e}")

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + getattr(self, "_generated", [])


class SdistWithProtos(sdist):
    """sdist, with the .proto files copied in (proto/evalctl/v1/*.proto)."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        src = build_stubs.find_proto_dir()
        for rel in build_stubs.PROTOS:
            dst = Path(base_dir) / "proto" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst)


# setuptools would leave build/ and evalctl_client.egg-info/ (with the generated stubs) in the
# source tree; build in a scratch directory instead ($EVALCTL_CLIENT_BUILD_DIR keeps it).
_scratch = os.environ.get("EVALCTL_CLIENT_BUILD_DIR")
if not _scratch:
    _scratch = tempfile.mkdtemp(prefix="evalctl-client-build-")
    atexit.register(shutil.rmtree, _scratch, ignore_errors=True)

setup(
    options={"build": {"build_base": os.path.join(_scratch, "build")},
             "egg_info": {"egg_base": _scratch}},
    packages=["evalctl_client"],
    package_data={"evalctl_client": ["py.typed"]},
    cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos},
)
