#!/usr/bin/env bash
# Train, gate on accuracy, label a folder of images to CSV, keep the model: the nightly/CI use of torchtools.
#
#   DATA=/srv/datasets FOLDER=/srv/incoming OUT=/srv/models/$(date +%F) examples/ci_train_and_predict.sh
#
# Exit status: 0 when the model reached THRESHOLD and the predictions were written; 1 when the accuracy is
# below THRESHOLD (the checkpoint stays in OUT for a look); 2 when torchtools refused its input (one
# `error:` line on stderr says why); anything else is a failure of the run itself.
#
# cron (every night at 02:30). cron runs with PATH=/usr/bin:/bin and no login environment, so give full paths
# (TORCHTOOLS names the venv's torchtools, as the default would) and a log; a crontab entry is one line:
# 30 2 * * * cd /srv/torchtools && TORCHTOOLS=/srv/torchtools/.venv/bin/torchtools DATA=/srv/datasets FOLDER=/srv/incoming OUT=/srv/models/nightly examples/ci_train_and_predict.sh >> /var/log/torchtools-nightly.log 2>&1
#
# CI (a GitHub Actions step; the failing exit status fails the job, OUT is kept as an artifact):
#   - run: DATA=$RUNNER_TEMP/data FOLDER=tests/images OUT=out examples/ci_train_and_predict.sh
#   - uses: actions/upload-artifact@v4
#     with: {name: model, path: out/}
set -euo pipefail

DATA=${DATA:-data}                     # dataset root: DATA/MNIST/raw holds the four IDX files
FOLDER=${FOLDER:-incoming}             # images to label (a folder, walked recursively)
OUT=${OUT:-ci-out}                     # checkpoint, predictions and the training summary go here
THRESHOLD=${THRESHOLD:-0.97}           # least test accuracy (0..1) that passes
RECIPE=${RECIPE:-fast}                 # fast: about 99% test accuracy in its 2 epochs (course: 10 epochs)
EPOCHS=${EPOCHS:-}                     # empty: the recipe's
# How to run torchtools: by default the checkout's venv (README set-up), found from this script's place, so
# neither an activated venv nor PATH matters; else e.g. TORCHTOOLS="python -m torchtools".
CHECKOUT_TORCHTOOLS="$(dirname "$0")/../.venv/bin/torchtools"
[[ -x $CHECKOUT_TORCHTOOLS ]] || CHECKOUT_TORCHTOOLS=torchtools
read -r -a TORCHTOOLS <<< "${TORCHTOOLS:-$CHECKOUT_TORCHTOOLS}"

mkdir -p "$OUT"

# --json prints one summary object as the last stdout line; --quiet keeps progress off stderr; the report
# folder (history.csv, curves.png, confusion.png, mistakes.png, ...) is the thing to look at when it fails.
"${TORCHTOOLS[@]}" mnist --data "$DATA" --recipe "$RECIPE" ${EPOCHS:+--epochs "$EPOCHS"} --json --quiet \
    --no-tensorboard --save "$OUT/mnist.pt" --report "$OUT/report" > "$OUT/train.json"
accuracy=$(tail -n 1 "$OUT/train.json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["metrics"]["test_accuracy"])')

if ! python3 -c 'import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))' "$accuracy" "$THRESHOLD"; then
    echo "FAIL: test accuracy $accuracy is below the threshold $THRESHOLD (checkpoint kept: $OUT/mnist.pt)" >&2
    exit 1
fi
echo "ok: test accuracy $accuracy (threshold $THRESHOLD)"

"${TORCHTOOLS[@]}" mnist --checkpoint "$OUT/mnist.pt" --predict "$FOLDER" --output "$OUT/predictions.csv" \
    --json --quiet > "$OUT/predict.json"
counts=$(tail -n 1 "$OUT/predict.json" | python3 -c \
    'import json, sys; s = json.load(sys.stdin); print(s["predicted_images"], "labelled,", len(s["unreadable_images"]), "unreadable")')

echo "predictions: $OUT/predictions.csv ($counts)"
echo "checkpoint:  $OUT/mnist.pt"
echo "summaries:   $OUT/train.json, $OUT/predict.json"
echo "report:      $OUT/report/"
