#!/bin/sh
# Writes the fuzz seeds (native/fuzz-seeds/*.hex and the golden vectors) as one file per frame
# into native/fuzz/corpus/decode, libFuzzer's starting corpus. Run from native/.
set -eu
mkdir -p fuzz/corpus/decode
python3 - <<'PY'
import hashlib, json, pathlib
frames = []
for name in ("frames", "charger", "battery"):
    frames += pathlib.Path(f"fuzz-seeds/{name}.hex").read_text().split()
for line in pathlib.Path("../tests/golden/vectors.jsonl").read_text().splitlines():
    frames.append(json.loads(line)["hex"])
for hex_ in frames:
    raw = bytes.fromhex(hex_)
    pathlib.Path("fuzz/corpus/decode", hashlib.sha1(raw).hexdigest()).write_bytes(raw)
print(f"{len(frames)} seed frames in fuzz/corpus/decode")
PY
