# The paper's tables and figures, and the embedded demo. Included by the
# top-level Makefile, which defines PY (the .venv interpreter) and `install`.
#
# Every target first launches what is not done yet, then renders what is:
# `python -m slurm launch` skips done and running cells, so running a target
# again reuses the finished runs and only re-renders. Runs live under
# $VASSO_RUNS (else ./runs), datasets under $VASSO_DATA (else ./data); both can
# be given on the command line too: `make table-cifar10 VASSO_RUNS=/scratch/runs`.
# The paper targets launch on Slurm where `sbatch` exists, else on this
# machine, and return without waiting: run them again to render more.
# SLURM_ARGS passes options to `python -m slurm launch` (partition, resources):
# `make table-cifar10 SLURM_ARGS="--partition gpu --gpus 1 --cpus 8 --time 12:00:00"`.

SLURM_ARGS ?=

.PHONY: demo table-cifar10 table-cifar100 table-label-noise figure-theta table-glue report tensorboard \
	table-noise-digits figure-noise-digits table-noise-mnist1d figure-noise-mnist1d \
	figure-adversary figure-adversary-mnist1d table-sharpness table-efficiency figure-efficiency \
	table-imagenet table-iwslt14

# `demo` waits for its cells. When one fails, the table is rendered all the
# same (it lists the failed cell and its error) and make then fails.
demo: install  ## the embedded default: the digits demo on this machine, then its table and figure
	@status=0; $(PY) -m slurm launch demo --executor local --wait || status=$$?; \
	$(PY) -m results demo || exit $$?; \
	echo "table:  outputs/tables/demo.md (LaTeX: outputs/tables/demo.tex)"; \
	if [ $$status -eq 0 ]; then \
	  echo "figure: outputs/figures/demo-curves.png (PDF: outputs/figures/demo-curves.pdf)"; \
	else \
	  echo "not every demo cell finished (the table lists them); to rerun the failed ones:" >&2; \
	  echo "  $(PY) -m slurm retry demo --executor local --wait" >&2; \
	fi; \
	exit $$status

table-cifar10: install  ## Table 1 (CIFAR-10): launch what is missing, render what is done
	$(PY) -m slurm launch cifar10 $(SLURM_ARGS)
	$(PY) -m results cifar10

table-cifar100: install  ## Table 2 (CIFAR-100): launch what is missing, render what is done
	$(PY) -m slurm launch cifar100 $(SLURM_ARGS)
	$(PY) -m results cifar100

table-label-noise: install  ## label-noise table and figure: launch what is missing, render what is done
	$(PY) -m slurm launch label-noise $(SLURM_ARGS)
	$(PY) -m results label-noise

figure-theta: install  ## VaSSO's theta sweep figure: launch what is missing, render what is done
	$(PY) -m slurm launch theta $(SLURM_ARGS)
	$(PY) -m results theta

# GLUE needs its data and roberta-base placed under $VASSO_DATA first (docs/glue.md).
table-glue: install  ## GLUE dev table (8 tasks x AdamW/SAM/VaSSO x 5 seeds): launch what is missing, render what is done
	$(PY) -m slurm launch glue $(SLURM_ARGS)
	$(PY) -m results glue

# The claims on a laptop (no download, ~15 minutes each on 2 idle cores): like
# `demo`, they run on this machine, wait, render the table (with the paired
# statistics) and the noise figure even when a cell failed, and then fail.
# Run them beside other work at the lowest priority: `nice -n 19 make table-noise-digits`.
define LAPTOP_SWEEP
@status=0; $(PY) -m slurm launch $(1) --executor local --wait || status=$$?; \
$(PY) -m results $(1) || exit $$?; \
echo "table:  outputs/tables/$(1).md, figure: outputs/figures/$(1)-noise.png"; \
if [ $$status -ne 0 ]; then echo "not every cell finished (the table lists them); rerun: $(PY) -m slurm retry $(1) --executor local --wait" >&2; fi; \
exit $$status
endef

table-noise-digits figure-noise-digits: install  ## label noise 0-60% on digits, SGD/SAM/VaSSO, 10 seeds, here: table and figure
	$(call LAPTOP_SWEEP,noise-digits)

table-noise-mnist1d figure-noise-mnist1d: install  ## label noise 0-60% on MNIST-1D, SGD/SAM/VaSSO, 10 seeds, here: table and figure
	$(call LAPTOP_SWEEP,noise-mnist1d)

# The mechanism and the sharpness. Both measure finished runs where they are rendered
# (`--device auto`: a GPU when there is one; measurements are cached under
# outputs/diagnostics/, so a second call only redraws).
figure-adversary: install  ## VaSSO's vs SAM's adversary along training (CIFAR-10 ResNet-18): launch what is missing, draw what is done
	$(PY) -m slurm launch adversary $(SLURM_ARGS)
	$(PY) -m results.adversary adversary

figure-adversary-mnist1d: install  ## the same on MNIST-1D, here (2 cells, minutes)
	$(PY) -m slurm launch adversary-mnist1d --executor local --wait
	$(PY) -m results.adversary adversary-mnist1d

table-sharpness: install  ## top Hessian eigenvalue of the final CIFAR models (Tables 1 and 2; launch those first)
	$(PY) -m results.sharpness cifar10 cifar100

table-efficiency figure-efficiency: install  ## cheaper steps (CIFAR-10 ResNet-18, CIFAR-100 WRN-28-10): launch what is missing, render what is done
	$(PY) -m slurm launch efficiency $(SLURM_ARGS)
	$(PY) -m results.efficiency

table-imagenet: install  ## ImageNet (ResNet-50, ViT-S/32): launch what is missing, render what is done (docs/imagenet.md)
	$(PY) -m slurm launch imagenet $(SLURM_ARGS)
	$(PY) -m results imagenet

# Needs the prepared IWSLT'14 data under $VASSO_DATA (docs/translation.md) and GPUs:
# `make table-iwslt14 SLURM_ARGS="--partition gpu --gpus 1 --cpus 8 --time 24:00:00"`.
table-iwslt14: install  ## IWSLT'14 De-En test BLEU (AdamW, SAM, VaSSO x 3 seeds): launch what is missing, render what is done
	$(PY) -m slurm launch iwslt14 $(SLURM_ARGS)
	$(PY) -m results iwslt14 --metric best

# Renders only: nothing is launched or trained. `make report` right after `make demo`
# shows the demo's table and figure, and every other experiment as not yet run with
# the command that starts it.
report: install  ## every experiment in one PDF and one web page: outputs/report/report.{pdf,html}
	$(PY) -m results.report

# TensorBoard reads the event files the engine writes into each run directory
# (benchmarks/monitor.py): on by default in a Slurm job, VASSO_TENSORBOARD=1 elsewhere.
# TENSORBOARD_ARGS passes options, e.g. `make tensorboard TENSORBOARD_ARGS="--port 6007 --bind_all"`.
TENSORBOARD_ARGS ?=
tensorboard: install  ## TensorBoard on the runs directory (VASSO_RUNS, else ./runs): live curves of running cells
	$(PY) -m tensorboard.main --logdir "$${VASSO_RUNS:-runs}" $(TENSORBOARD_ARGS)
