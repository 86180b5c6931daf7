"""``make demo``: the main job on the embedded default store, end to end.

Builds a small image, stores it, lists it, exports it and checks the exported bytes are
the ones that went in. Uses a throwaway store so it never touches the user's own.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from . import connect


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="imagehub-demo-") as tmp:
        work = Path(tmp)
        source = work / "demo.img"
        with source.open("wb") as fh:  # 8 MiB, written in chunks like a real image
            for _ in range(8):
                fh.write(os.urandom(1 << 20))
        want = hashlib.sha256(source.read_bytes()).hexdigest()
        config = work / "clouds.yaml"
        config.write_text(f"clouds:\n  local:\n    backend: local\n    path: {work / 'store'}\n")
        store = connect("local", config=config)  # through the plugin registry, as users do
        image = store.create(source, name="demo", aliases=["demo-latest"],
                             properties={"os": "demo", "release": "1"})
        print(f"created  {image.id}  {image.checksum}")
        for listed in store.all():
            print(f"listed   {listed.id}  {listed.name}  {listed.size} bytes  {listed.aliases}")
        out = work / "exported.img"
        store.export("demo-latest").save(out)
        got = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"exported {out.name}  sha256:{got}")
        if got != want:
            print("demo: FAILED: exported bytes differ", file=sys.stderr)
            return 1
        print("demo: OK: exported bytes are identical to the source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
