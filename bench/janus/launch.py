"""Start Janus for a benchmark: generated config, VideoRoom + HTTP only, candidates on loopback.

The config directory is generated per run: the plugins folder holds only the VideoRoom plugin
and the transports folder only the HTTP transport (symlinks into the package's folders), the
HTTP transport listens on 127.0.0.1 on a free port, no STUN, a port range for media. Janus 1.1
skips loopback interfaces when gathering ICE candidates, so it runs with the LD_PRELOAD shim
in noloopback.c, compiled here once into the cache directory.
"""

import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench import clip, servers
from bench.janus.client import JanusClient

SHIM_SOURCE = Path(__file__).with_name("noloopback.c")
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu/janus",
    "/usr/lib/aarch64-linux-gnu/janus",
    "/usr/lib/janus",
    "/opt/janus/lib/janus",
)


class JanusMissing(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("janus") or shutil.which("janus", path="/usr/bin:/opt/janus/bin")
    if found is None:
        raise JanusMissing("janus is not installed: apt-get install -y janus (Debian's package)")
    return found


def library_dir() -> Path:
    for candidate in LIBRARY_DIRS:
        path = Path(candidate)
        if (path / "plugins" / "libjanus_videoroom.so").exists():
            return path
    raise JanusMissing(f"no libjanus_videoroom.so under any of {', '.join(LIBRARY_DIRS)}")


def shim() -> Path:
    """The compiled LD_PRELOAD library, built once per source version."""
    source = SHIM_SOURCE.read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    target = clip.cache_dir() / f"janus-noloopback-{key}.so"
    if target.exists():
        return target
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise JanusMissing("compiling the loopback shim needs gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-o", str(partial), str(SHIM_SOURCE), "-ldl"],
        check=True,
        capture_output=True,
    )
    partial.replace(target)
    return target


def write_config(folder: Path, port: int, rtp_ports: tuple[int, int]) -> Path:
    libs = library_dir()
    plugins, transports, empty = folder / "plugins", folder / "transports", folder / "none"
    for path in (plugins, transports, empty):
        path.mkdir()
    (plugins / "libjanus_videoroom.so").symlink_to(libs / "plugins" / "libjanus_videoroom.so")
    (transports / "libjanus_http.so").symlink_to(libs / "transports" / "libjanus_http.so")
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = 3
    session_timeout = 60
}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    ice_enforce_list = "127.0.0.1"
    ignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
events: {{
    broadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {port}
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


@contextlib.asynccontextmanager
async def janus(cpu: int | None) -> AsyncIterator[servers.Started]:
    """A Janus process on a free port of 127.0.0.1, stopped at the end."""
    command = [binary()]
    library = shim()
    port = servers.free_port()
    low = random.randrange(20000, 58000, 1000)
    with tempfile.TemporaryDirectory(prefix="veche-bench-janus-") as temporary:
        folder = Path(temporary)
        config = write_config(folder, port, (low, low + 1999))
        command += ["-C", str(config), "-F", str(folder), "-o"]
        env = {**os.environ, "LD_PRELOAD": str(library)}
        log = folder / "janus.log"
        try:
            async with servers.subprocess(command, port, cpu, log=log, env=env) as process:
                yield servers.Started(process.pid, port, f"http://127.0.0.1:{port}/janus")
        finally:
            if os.environ.get("VECHE_BENCH_JANUS_LOG") and log.exists():
                shutil.copy(log, os.environ["VECHE_BENCH_JANUS_LOG"])


async def client(started: servers.Started, publishers: int, codec: str) -> JanusClient:
    janus_client = JanusClient(started.url)
    await janus_client.start(publishers, codec)
    return janus_client
