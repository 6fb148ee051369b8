"""Put single, deliberate bugs into a copy of the tree and check that the tests catch each.

    python scripts/mutation_test.py            # every mutant (make mutation-test)
    python scripts/mutation_test.py --list     # the mutants, without running anything
    python scripts/mutation_test.py --only engine-ignores-theta gsam-tensor-rho-unclamped

Each mutant is one exact text replacement in one source file and the tests that
should catch it. The script copies the working tree (tracked and untracked, not
ignored files) to a temporary folder once, checks that the test files the
selections draw from pass there unmutated, then for each mutant writes the bug,
runs its tests (``nice``, ``-x``), and puts the file back. The working tree is never modified: other
processes may be reading it. A mutant is *killed* when its tests fail, *survives*
when they pass. It prints the kill rate and every survivor; it exits 1 when the
kill rate is under ``--target`` or when a mutant no longer applies (its text was
edited away: update the list).

Not part of CI (it runs the relevant tests once per mutant: about 20 minutes on a
2-core CPU). The latest kill rate, its date and any survivor with its reason are
in docs/testing.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str   # exact text, found exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: node ids, files, -k expressions


def m(name: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(name, file, old, new, tests)


T = "tests/"
VMATH = T + "test_vasso_math.py"
VSTATE = T + "test_vasso_state.py"
VAMP = T + "test_vasso_amp.py"
VDDP = T + "test_vasso_ddp.py"
VFUSED = T + "test_vasso_fused.py"
WIRING = T + "test_engine_wiring.py"
DIGITS = T + "test_engine_digits.py"
NOISE = T + "test_data_noise_and_sampling.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- the eleven bugs of issue #20 that no test caught ------------------------------
    m("engine-ignores-theta", "benchmarks/methods.py",
      'return {"theta": cfg.theta,', 'return {"theta": 0.9,',
      WIRING + "::test_vasso_options_reach_the_optimizer"),
    m("engine-ignores-bn-stats", "benchmarks/methods.py",
      "bn_stats=cfg.bn_stats,", 'bn_stats="first",',
      WIRING + "::test_vasso_options_reach_the_optimizer"),
    m("engine-ignores-eval-every", "benchmarks/engine.py",
      "if pos.epoch % cfg.eval_every == 0 or pos.epoch == cfg.epochs:", "if True:",
      WIRING + "::test_eval_every_evaluates_every_k_epochs_and_after_the_last"),
    m("engine-ignores-bf16", "benchmarks/engine.py",
      'bf16 = cfg.precision == "bf16"', "bf16 = False",
      WIRING, "-k", "precision"),
    m("scheduler-steps-before-the-step", "benchmarks/engine.py",
      "loss = self._train_step(x, y)\n                    self.scheduler.step()",
      "self.scheduler.step()\n                    loss = self._train_step(x, y)",
      WIRING, "-k", "scheduled_rate"),
    m("best-epoch-tie-takes-the-later", "benchmarks/engine.py",
      'if test["acc"] > pos.best_acc:', 'if test["acc"] >= pos.best_acc:',
      WIRING + "::test_the_best_epoch_on_a_tie_is_the_first"),
    m("resume-forgets-rng-state", "benchmarks/engine.py",
      '        set_rng_state(ckpt["rng"])\n', "",
      WIRING + "::test_resume_mid_ascent_cycle_with_dropout_is_bit_exact[vasso]"),
    m("load-state-dict-forgets-step-counter", "vasso/sam.py",
      'self._steps = int(state_dict["steps"])', "self._steps = 0",
      VSTATE, "-k", "resume_continues"),
    m("host-read-in-global-norm", "vasso/_foreach.py",
      "return torch.linalg.vector_norm(torch.stack(norms))",
      "return torch.tensor(float(torch.linalg.vector_norm(torch.stack(norms))))",
      VFUSED, "-k", "host"),
    m("gsam-tensor-rho-unclamped", "vasso/gsam.py",
      "return rho.clamp(min=0.0)", "return rho",
      VMATH + "::test_gsam_rho_follows_the_learning_rate_and_never_goes_negative"),
    m("colour-from-salted-hash", "results/plots.py",
      "zlib.crc32(method.lower().encode())", "hash(method.lower())",
      T + "test_results_plots.py::test_palette_is_fixed_and_unknown_methods_are_stable"),

    # -- the optimizer math ------------------------------------------------------------
    m("sam-norm-without-eps", "vasso/sam.py",
      "scale = rho / (global_norm(grads) + self.eps)", "scale = rho / global_norm(grads)",
      VMATH, "-k", "zero_gradient"),
    m("global-norm-is-sum-of-norms", "vasso/_foreach.py",
      "return torch.linalg.vector_norm(torch.stack(norms))", "return torch.stack(norms).sum()",
      VMATH, "-k", "reference or norm_rho"),
    m("dot-drops-negative-half", "vasso/_foreach.py",
      "return torch.stack(torch._foreach_norm(positive, 1)).sum() - torch.stack(",
      "return torch.stack(torch._foreach_norm(positive, 1)).sum() + 0 * torch.stack(",
      VMATH, "-k", "reference"),
    m("restore-skipped", "vasso/sam.py",
      "                self._restore(params)\n", "",
      VMATH, "-k", "norm_rho_and_restore"),
    m("asam-ignores-eta", "vasso/asam.py",
      "torch._foreach_add_(t, self.eta)", "torch._foreach_add_(t, 0.0)",
      VMATH, "-k", "reference and ASAM"),
    m("asam-scales-t-once", "vasso/asam.py",
      "e = torch._foreach_mul(scaled_grads, t)  # T_w^2 g", "e = list(scaled_grads)",
      VMATH, "-k", "reference and ASAM"),
    m("asam-scales-biases", "vasso/asam.py",
      'if "weight" in name}', 'if "weight" in name or "bias" in name}',
      VMATH, "-k", "asam"),
    m("vasso-average-keeps-theta-of-the-old", "vasso/vasso.py",
      "torch._foreach_mul_(averages, 1.0 - w)", "torch._foreach_mul_(averages, w)",
      VMATH, "-k", "reference and VaSSO"),
    m("vasso-d0-is-theta-g0", "vasso/vasso.py",
      "self._weight = torch.ones((), dtype=dtype, device=grads[0].device)",
      "self._weight = torch.full((), self.theta, dtype=dtype, device=grads[0].device)",
      VMATH, "-k", "reference and VaSSO"),
    m("vasso-average-only-on-ascent-steps", "vasso/sam.py",
      "        if not self._reusing or self._observes_reused_gradient():\n",
      "        if self.ascends_this_step() and (not self._reusing or self._observes_reused_gradient()):\n",
      VMATH, "-k", "skipped_steps"),
    m("gsam-descent-sign", "vasso/gsam.py",
      "torch._foreach_add_(grads, clean, alpha=-self.alpha)",
      "torch._foreach_add_(grads, clean, alpha=self.alpha)",
      VMATH, "-k", "reference and GSAM"),
    m("gsam-rho-ignores-lr-min", "vasso/gsam.py",
      "(lr - self.lr_min) / (self.lr_max - self.lr_min)", "lr / self.lr_max",
      VMATH, "-k", "gsam"),
    m("bn-stats-not-restored", "vasso/sam.py",
      "        if running_stats and self._running_stats:\n            self._running_stats.restore()\n", "",
      VSTATE, "-k", "batchnorm"),
    m("ascent-schedule-off-by-one", "vasso/sam.py",
      "self._ascends = self._steps % self.ascent_every == 0",
      "self._ascends = self._steps % self.ascent_every != 1",
      VMATH, "-k", "ascent_every"),
    m("ascent-rng-not-restored", "vasso/sam.py",
      'self._ascent_rng.set_state(state_dict["ascent_rng"])', "pass",
      VSTATE, "-k", "resume_continues and prob"),
    m("reuse-counts-two-passes", "vasso/sam.py",
      'passes = 2 if self._phase == "ascended" else 1', "passes = 2",
      T + "test_vasso_cheaper_steps.py"),
    m("reuse-forgets-the-last-perturbation", "vasso/sam.py",
      "            if self.skip == \"reuse\":\n                self._keep_last_perturbation(targets, e)\n", "",
      T + "test_vasso_cheaper_steps.py"),
    m("load-state-dict-drops-base-state", "vasso/sam.py",
      '        self.base.load_state_dict(state_dict["base"])\n', "",
      VSTATE, "-k", "resume_continues"),

    # -- the per-tensor reference the classes are checked against ------------------------
    m("reference-vasso-average-weights-swapped", "vasso/_reference.py",
      "return [(1 - theta) * di + theta * gi for di, gi in zip(d, g)]",
      "return [theta * di + (1 - theta) * gi for di, gi in zip(d, g)]",
      T + "test_vasso_reference.py"),
    m("reference-gsam-radius-unclamped", "vasso/_reference.py",
      "else max(rho_t, 0.0)", "else rho_t",
      T + "test_vasso_reference.py"),

    # -- fp16: the skipped step ----------------------------------------------------------
    m("fp16-second-pass-overflow-ignored", "vasso/sam.py",
      "found_inf = torch.maximum(found_inf, nonfinite_flag(grads))", "found_inf = found_inf",
      VAMP, "-k", "overflow_in_either"),
    m("fp16-vasso-commits-overflowed-average", "vasso/vasso.py",
      "select_(self._active_averages, self._candidate, found_inf)",
      "select_(self._active_averages, self._candidate, torch.zeros_like(found_inf))",
      VAMP, "-k", "overflow"),
    m("fp16-scaler-not-updated", "vasso/sam.py",
      "        if scaler is not None:\n            scaler.update()\n", "",
      VAMP, "-k", "overflow_in_either"),
    m("fp16-unfused-base-steps-anyway", "vasso/sam.py",
      "elif not found_inf.item():", "else:",
      VAMP, "-k", "overflow_in_either"),

    # -- data parallel -------------------------------------------------------------------
    m("ddp-local-sync-all-reduces-first-pass", "vasso/sam.py",
      'if self.sync == "local" and self.ascends_this_step():', "if False:",
      VDDP),
    m("ddp-step-forgets-first-pass-context", "vasso/sam.py",
      "with torch.enable_grad(), self.first_pass():", "with torch.enable_grad():",
      VDDP),

    # -- label noise and seeds -------------------------------------------------------------
    m("label-noise-may-keep-the-class", "benchmarks/data.py",
      "offsets = torch.randint(1, num_classes, (count,), generator=generator)",
      "offsets = torch.randint(0, num_classes, (count,), generator=generator)",
      NOISE, "-k", "label_noise"),
    m("label-noise-depends-on-model", "benchmarks/tasks/base.py",
      'derive_seed("label-noise", cfg.dataset, cfg.label_noise, cfg.seed)',
      'derive_seed("label-noise", cfg.dataset, cfg.model, cfg.label_noise, cfg.seed)',
      NOISE, "-k", "label_noise"),
    m("seeds-depend-on-optimizer", "benchmarks/tasks/base.py",
      "derive_seed(purpose, cfg.task, cfg.dataset, cfg.model, cfg.seed)",
      "derive_seed(purpose, cfg.task, cfg.dataset, cfg.model, cfg.optimizer, cfg.seed)",
      NOISE, "-k", "optimizer"),

    # -- the engine's wiring -----------------------------------------------------------------
    m("engine-ignores-eta", "benchmarks/methods.py",
      '{"eta": cfg.eta, "scale": cfg.asam_scale}', '{"scale": cfg.asam_scale}',
      WIRING + "::test_asam_options_reach_the_optimizer"),
    m("engine-ignores-asam-scale", "benchmarks/methods.py",
      '{"eta": cfg.eta, "scale": cfg.asam_scale}', '{"eta": cfg.eta}',
      WIRING + "::test_asam_options_reach_the_optimizer"),
    m("engine-ignores-gsam-alpha", "benchmarks/methods.py",
      '"alpha": cfg.gsam_alpha,', '"alpha": 0.0,',
      WIRING + "::test_gsam_options_reach_the_optimizer"),
    m("engine-ignores-gsam-rho-min", "benchmarks/methods.py",
      "rho_min = cfg.rho if cfg.gsam_rho_min is None else cfg.gsam_rho_min", "rho_min = cfg.rho",
      WIRING + "::test_gsam_options_reach_the_optimizer"),
    m("engine-ignores-ascent-every", "benchmarks/methods.py",
      "ascent_every=cfg.ascent_every,", "ascent_every=1,",
      WIRING + "::test_vasso_options_reach_the_optimizer"),
    m("engine-ignores-nesterov", "benchmarks/methods.py",
      '"nesterov": cfg.nesterov', '"nesterov": False',
      WIRING + "::test_vasso_options_reach_the_optimizer"),
    m("engine-ignores-adamw", "benchmarks/methods.py",
      "spec = BASES[cfg.base]", 'spec = BASES["sgd"]',
      WIRING + "::test_adamw_base"),
    m("engine-ignores-label-smoothing", "benchmarks/tasks/base.py",
      "nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)", "nn.CrossEntropyLoss()",
      WIRING, "-k", "label_smoothing"),
    m("engine-ignores-momentum", "benchmarks/methods.py",
      '"momentum": cfg.momentum,', '"momentum": 0.9,',
      WIRING + "::test_vasso_options_reach_the_optimizer"),
    m("warmup-off-by-one", "benchmarks/engine.py",
      "return (step + 1) / warmup", "return step / warmup",
      WIRING, "-k", "scheduled_rate"),
    m("resume-forgets-train-sums", "benchmarks/engine.py",
      'self.sums = ckpt["train_sums"].to(self.device)', "pass",
      WIRING + "::test_resume_mid_ascent_cycle_with_dropout_is_bit_exact[vasso]"),
    m("resume-forgets-scheduler", "benchmarks/engine.py",
      '        self.scheduler.load_state_dict(ckpt["scheduler"])\n', "",
      WIRING + "::test_resume_mid_ascent_cycle_with_dropout_is_bit_exact[vasso]"),
    m("nonfinite-records-the-last-bad-step", "benchmarks/engine.py",
      "newly_bad = (self.bad_step < 0) & ~torch.isfinite(loss)", "newly_bad = ~torch.isfinite(loss)",
      DIGITS, "-k", "non_finite"),
    m("cell-id-hashes-location-fields", "benchmarks/config.py",
      "if k not in LOCATION_FIELDS and k not in unused}", 'if k != "data_dir" and k not in unused}',
      T + "test_cli_config.py", "-k", "cell_id"),
    m("cell-id-hashes-unused-fields", "benchmarks/config.py",
      "if k not in LOCATION_FIELDS and k not in unused}", "if k not in LOCATION_FIELDS}",
      T + "test_methods.py", "-k", "cell"),
    m("cell-id-drops-a-used-field", "benchmarks/methods.py",
      'SHARPNESS_FIELDS + ("theta", "update_on_reuse")', 'SHARPNESS_FIELDS + ("update_on_reuse",)',
      T + "test_methods.py", "-k", "cell"),
    m("engine-ignores-ascent-prob", "benchmarks/methods.py",
      "ascent_prob=cfg.ascent_prob,", "ascent_prob=None,",
      WIRING + "::test_cheaper_step_options_reach_the_optimizer"),
    m("engine-ignores-skip", "benchmarks/methods.py",
      "skip=cfg.skip,", 'skip="clean",',
      WIRING + "::test_cheaper_step_options_reach_the_optimizer"),
    m("engine-ignores-adam-betas", "benchmarks/methods.py",
      '"betas": (cfg.adam_beta1, cfg.adam_beta2),', '"betas": (0.9, 0.999),',
      WIRING + "::test_adamw_base"),
    m("result-assumes-two-passes-per-step", "benchmarks/engine.py",
      "passes = self.optimizer.passes if self.optimizer is not self.base else self.pos.step",
      "passes = 2 * self.pos.step if self.optimizer is not self.base else self.pos.step",
      WIRING, "-k", "measured_passes"),
    m("ascent-prob-with-ascent-every-allowed", "benchmarks/config.py",
      "if self.ascent_every > 1:", "if False:",
      T + "test_cli_config.py", "-k", "invalid_config"),
    m("gsam-local-sync-with-alpha-allowed", "vasso/gsam.py",
      'if alpha and kwargs.get("sync") == "local":', "if False:",
      VSTATE, "-k", "bad_arguments"),
    m("init-seed-depends-on-optimizer", "benchmarks/engine.py",
      'torch.manual_seed(data_seed(cfg, "init"))',
      'torch.manual_seed(data_seed(cfg, "init") + len(cfg.optimizer))',
      DIGITS + "::test_init_and_batches_shared_across_optimizers_not_seeds"),

    # -- the results tables -----------------------------------------------------------------
    m("table-std-is-population", "results/render.py",
      "std = statistics.stdev(values) if len(values) >= 2 else None",
      "std = statistics.pstdev(values) if len(values) >= 2 else None",
      T + "test_results.py", "-k", "golden_markdown"),
    m("sweep-band-std-is-population", "results/grid.py",
      "return statistics.stdev(self.values) if self.n >= 2 else None",
      "return statistics.pstdev(self.values) if self.n >= 2 else None",
      T + "test_results_plots.py", "-k", "noise_figure"),
    m("best-mean-is-the-lowest", "results/render.py",
      "best[column] = max(means)", "best[column] = min(means)",
      T + "test_results.py", "-k", "golden_markdown"),
)


def copy_tree(dest: Path) -> None:
    """The files git would see (tracked, and untracked but not ignored) under ``dest``."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, check=True, capture_output=True).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """``("pass" | "fail" | "timeout" | "empty", seconds, the first failure)`` for one
    selection in ``tree``."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(tree)}
    command = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q",
               "-p", "no:cacheprovider", "-o", "addopts=", "-rfE", *tests]
    tic = time.monotonic()
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - tic, ""
    seconds = time.monotonic() - tic
    if done.returncode == 5:  # pytest: no test collected
        return "empty", seconds, ""
    # "FAILED tests/x.py::test - AssertionError: ...": which test caught it, and how.
    failures = [line for line in done.stdout.decode(errors="replace").splitlines()
                if line.startswith(("FAILED ", "ERROR "))]
    return ("pass" if done.returncode == 0 else "fail"), seconds, (failures or [""])[0][:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--target", type=float, default=95.0, help="kill rate to reach, in %%")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds per test run; a mutant that hangs its tests counts as killed")
    args = parser.parse_args(argv)

    mutants = MUTANTS
    if args.only:
        unknown = set(args.only) - {mu.name for mu in MUTANTS}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))} (see --list)")
        mutants = tuple(mu for mu in MUTANTS if mu.name in args.only)
    if args.list:
        for mu in mutants:
            print(f"{mu.name:42s} {mu.file:28s} {' '.join(mu.tests)}")
        return 0

    stale = [mu for mu in mutants if (REPO / mu.file).read_text().count(mu.old) != 1]
    for mu in stale:
        print(f"STALE {mu.name}: its text is not found exactly once in {mu.file}; update the list",
              file=sys.stderr)
    mutants = tuple(mu for mu in mutants if mu not in stale)

    with tempfile.TemporaryDirectory(prefix="vasso-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        # Every selection must pass unmutated, or a "kill" means nothing: one run over
        # the files they select from (a superset) checks them all with one start-up.
        files = sorted({arg.split("::")[0] for mu in mutants for arg in mu.tests
                        if arg.startswith("tests/")})
        print(f"tree copied to {tree}; running {len(files)} test files unmutated", flush=True)
        status, seconds, failure = run_tests(tree, tuple(files), args.timeout * len(files))
        if status != "pass":
            print(f"the unmutated tests {status} ({failure or ' '.join(files)}): fix them first",
                  file=sys.stderr)
            return 1
        print(f"unmutated: pass ({seconds:.0f} s)", flush=True)

        survivors, killed = [], 0
        for i, mu in enumerate(mutants, 1):
            path = tree / mu.file
            original = path.read_text()
            path.write_text(original.replace(mu.old, mu.new))
            try:
                status, seconds, failure = run_tests(tree, mu.tests, args.timeout)
            finally:
                path.write_text(original)
            if status == "empty":
                print(f"  selection of {mu.name} collects no test: fix the list", file=sys.stderr)
                return 1
            verdict = "survived" if status == "pass" else "killed" + (" (timeout)" if status == "timeout" else "")
            killed += status != "pass"
            if status == "pass":
                survivors.append(mu)
            print(f"[{i:2d}/{len(mutants)}] {verdict:17s} {mu.name} ({seconds:.0f} s)", flush=True)
            if failure:
                print(f"        {failure}", flush=True)

    rate = 100.0 * killed / len(mutants) if mutants else 100.0
    print(f"\n{datetime.date.today()}: {killed} of {len(mutants)} mutants killed: "
          f"kill rate {rate:.1f}% (target {args.target:.0f}%)")
    for mu in survivors:
        print(f"  SURVIVOR {mu.name} ({mu.file}): {' '.join(mu.tests)}")
    return 0 if rate >= args.target and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
