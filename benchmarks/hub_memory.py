"""Memory of N Jupyter kernels that each load SmolLM2 on one machine, as a class on one hub does.

    python benchmarks/hub_memory.py --label after                         # this checkout's minillm
    python benchmarks/hub_memory.py --label before --code /path/to/old   # another checkout's minillm

For 1, 4 and 8 kernels (real ipykernels, started through jupyter_client one after another) each
runs `load_pretrained("smollm2-135m")` and one forward pass. Then, per kernel, from
/proc/PID/smaps_rollup: USS (private pages: what this kernel alone costs), PSS (shared pages
divided among the processes that map them), RSS and anonymous memory; and the totals. During
each load the kernel's USS and anonymous memory are sampled every 50 ms (their peaks) and VmHWM
(peak RSS) is read at the end. The model must be in the cache already
(`python -m minillm.pretrained fetch smollm2-135m`). Linux only.
Writes benchmarks/results/hub_memory_LABEL.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
LOAD = (
    "import torch\n"
    "from minillm.pretrained import load_pretrained\n"
    "model = load_pretrained('smollm2-135m')\n"
    "with torch.no_grad():\n"
    "    logits = model(torch.arange(64)[None]).logits\n"
)


def smaps_mb(pid: int) -> dict[str, float]:
    """RSS, PSS, USS (Private_Clean + Private_Dirty) and anonymous memory of process `pid` in MB.

    A file mapped by one process only counts in its USS (Private_Clean): with one kernel the mapped
    weights are "unique", with several they become shared. Anonymous memory never is."""
    kb = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        kb[name.rstrip(":")] = int(value)
    return {
        "rss": kb["Rss"] / 1024,
        "pss": kb["Pss"] / 1024,
        "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
        "anon": kb["Anonymous"] / 1024,  # private to the process whatever else maps the same file
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def start_kernel(code_dir: Path):
    """A python3 ipykernel importing minillm from `code_dir`; returns (manager, client, pid)."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "PYTHONPATH": str(code_dir)})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc, km.provisioner.pid


def load_in(kc, pid: int) -> dict[str, float]:
    """Run LOAD in the kernel, sampling its USS until the reply comes; the load's figures."""
    start, peak_uss, peak_anon = time.perf_counter(), 0.0, 0.0
    msg_id = kc.execute(LOAD)
    while True:
        now = smaps_mb(pid)
        peak_uss, peak_anon = max(peak_uss, now["uss"]), max(peak_anon, now["anon"])
        try:
            reply = kc.get_shell_msg(timeout=0.05)
        except Exception:  # queue.Empty: still loading
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"loading failed in the kernel: {reply['content'].get('evalue')}")
    seconds = round(time.perf_counter() - start, 1)
    return {"load_s": seconds, "peak_uss": peak_uss, "peak_anon": peak_anon, "peak_rss": peak_rss_mb(pid)}


def measure(n: int, code_dir: Path) -> dict:
    kernels, loads = [], []
    try:
        for _ in range(n):  # one at a time: how students arrive, and a fair peak per load
            km, kc, pid = start_kernel(code_dir)
            kernels.append((km, kc, pid))
            loads.append(load_in(kc, pid))
        time.sleep(1)
        per_kernel = [smaps_mb(pid) for _, _, pid in kernels]
    finally:
        for km, kc, _ in kernels:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    rounded = [{k: round(v) for k, v in {**m, **load}.items()} for m, load in zip(per_kernel, loads)]
    return {
        "kernels": n,
        "per_kernel": rounded,
        "total_uss_mb": round(sum(m["uss"] for m in per_kernel)),
        "total_pss_mb": round(sum(m["pss"] for m in per_kernel)),
        "mean_uss_mb": round(sum(m["uss"] for m in per_kernel) / n),
        "mean_anon_mb": round(sum(m["anon"] for m in per_kernel) / n),
        "max_peak_uss_mb": round(max(load["peak_uss"] for load in loads)),
        "max_peak_anon_mb": round(max(load["peak_anon"] for load in loads)),
        "max_peak_rss_mb": round(max(load["peak_rss"] for load in loads)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="names the result file: hub_memory_LABEL.json")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to import")
    parser.add_argument("--kernels", default="1,4,8", help="comma-separated kernel counts")
    args = parser.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists():
        parser.error("needs Linux's /proc/PID/smaps_rollup")
    if not (args.code / "minillm" / "__init__.py").exists():
        parser.error(f"--code must be a checkout with minillm/ inside, got {args.code}")
    import torch

    runs = []
    for n in map(int, args.kernels.split(",")):
        runs.append(measure(n, args.code.resolve()))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "per_kernel"}), flush=True)
    result = {
        "label": args.label,
        "code": str(args.code.resolve()),
        "command": "python benchmarks/hub_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__.split("+")[0],
        "date": time.strftime("%Y-%m-%d"),
        "units": "MB (2**20 bytes)",
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"hub_memory_{args.label}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
