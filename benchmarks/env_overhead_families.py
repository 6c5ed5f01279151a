"""Env overhead for the SDXL, SD3 and FLUX backbones: identity episode time over plain pipeline time, same run.

Run: ``python benchmarks/env_overhead_families.py [--repeats 7] [--models sdxl,sd3,flux]``

The same measurement as ``env_overhead.py`` (whose ``bench_model`` it reuses: plain ``pipe(query, ...)`` and one
identity episode per preview, alternating, medians), on the tiny random-weight pipelines of the other families
(64x64 images, CPU). ``guidance_scale=7.5`` is classifier-free guidance for SDXL and SD3 (the model sees batch 2)
and FLUX.1-dev's guidance embedding for FLUX. Results go to ``benchmarks/results/env_overhead_families.{json,csv}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from env_overhead import bench_model, write_results

from promptloop_env.backbones.tiny import (
    tiny_flux_pipeline,
    tiny_stable_diffusion_3_pipeline,
    tiny_stable_diffusion_xl_pipeline,
)

MODELS: dict[str, Callable[[], object]] = {
    "sdxl": tiny_stable_diffusion_xl_pipeline,
    "sd3": tiny_stable_diffusion_3_pipeline,
    "flux": tiny_flux_pipeline,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per configuration")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {sorted(MODELS)}")
    parser.add_argument("--previews", default="none,latent_rgb,vae", help="comma-separated previews")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--refinements", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, MODELS[name](), args.previews.split(","), args.repeats, args.steps, args.refinements)
    write_results(rows, "env_overhead_families")


if __name__ == "__main__":
    main()
