#!/usr/bin/env bash
# Builds kiln's image from docker/Dockerfile and uses it as a CI pipeline would, over curl:
# waits for /readyz and the HEALTHCHECK, runs the README's GitHub Actions job script (which trains
# examples/lenet-bn-synthetic.json and examples/gru-synthetic-text.json), checks those jobs'
# metrics, downloads a checkpoint and checks its sha256, asks the language model for text; stops
# the container in the middle of a third job (a clean exit within 10 s) and starts a new container
# on the same volume, where every job, its metrics and its checkpoints are still there and the
# interrupted job resumes from its checkpoint.
#
#   docker/smoke-test.sh [--build-only | --use-built] [BINARY]
#
# --build-only builds the image and stops; --use-built tests the kiln:latest built so (scripts/test
# builds it while the suite runs, and tests it after).
#
# BINARY (not with --use-built): a kiln built on this machine (default: the one `cargo test` built) goes into the image
# through the Dockerfile's KILN_PREBUILT, so CI compiles kiln once; the runtime stage is the one users
# build; it is tagged kiln:latest, replacing an image of that name. No registry is needed: without
# one, both base images are the Debian bookworm that docker/base-image.sh makes with debootstrap.
# The containers and the volume it starts are removed at the end.
set -euo pipefail
target="${CARGO_TARGET_DIR:-target}"
phase=all
case "${1:-}" in
  --build-only) phase=build; shift ;;
  --use-built) phase=test; shift ;;
esac
binary="${1:-}"
[ -z "$binary" ] || binary="$(realpath "$binary")"
cd "$(dirname "$0")/.."
binary="${binary:-$(realpath -m "$target/debug/kiln")}"
command -v jq >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq jq >/dev/null
}

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

name="kiln-smoke-$$"
volume="kiln-smoke-$$"
context="$(mktemp -d)"
# The key CI gives the container, as a pipeline would from its secrets.
export KILN_API_KEY="kiln_smoke-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")"
cleanup() {
  docker rm -f "$name" "$name-2" >/dev/null 2>&1 || true
  docker volume rm -f "$volume" >/dev/null 2>&1 || true
  rm -rf "$context"
}
trap cleanup EXIT

if [ "$phase" != test ]; then
  [ -x "$binary" ] || fail "no kiln binary at $binary (run cargo test first)"
  # A binary built on the host runs in the bookworm image only if it needs no newer glibc than
  # bookworm's 2.36 (a host on Debian 13 or Ubuntu 24.04 builds against a newer one).
  glibc="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
  [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | tail -n 1)" = 2.36 ] \
    || fail "$binary needs glibc $glibc, the bookworm image has 2.36: build the image from source instead"

  step "base image"
  # The real debian:bookworm-slim where a registry can be reached, else a debootstrapped one;
  # KILN_BASE_IMAGE names one made already (scripts/test makes it while the tests build).
  base="${KILN_BASE_IMAGE:-$(docker/base-image.sh)}"
  echo "$base"

  step "image kiln:latest from docker/Dockerfile (binary $binary)"
  # The build context holds only the manifests, the stripped binary, which the builder stage installs,
  # and the script that gathers the runtime's files.
  docker/prebuilt-context.sh "$binary" "$context"
  start=$(date +%s)
  docker build -q -f docker/Dockerfile \
    --build-arg RUST_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" \
    --build-arg KILN_PREBUILT=kiln -t kiln:latest "$context" >/dev/null
  echo "built in $(( $(date +%s) - start )) s; size $(docker image inspect -f '{{.Size}}' kiln:latest | awk '{printf "%.0f MB", $1/1e6}')"
  # The images of earlier runs (the previous kiln:latest, the builder stage), now untagged.
  docker image prune -f --filter label=org.opencontainers.image.title=kiln >/dev/null
  if [ "$phase" = build ]; then exit 0; fi
else
  docker image inspect kiln:latest >/dev/null 2>&1 || fail "no image kiln:latest (build it with --build-only)"
fi
docker volume create "$volume" >/dev/null

# Starts a container on the volume, published on a free port of 127.0.0.1; sets $base_url.
run_container() {
  docker run -d --name "$1" -p 127.0.0.1::8080 -v "$volume:/data" -e KILN_API_KEY="$KILN_API_KEY" kiln:latest >/dev/null
  local port
  port="$(docker port "$1" 8080/tcp | head -n 1 | sed 's/.*://')"
  base_url="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    curl -sf "$base_url/readyz" >/dev/null && return 0
    sleep 0.5
  done
  docker logs "$1" >&2
  fail "$1 was not ready within 60 s"
}
# GET or POST with a JSON body and the key; prints the answer. On an HTTP error it says which
# request got which answer (the problem+json body) on stderr, and fails with curl's exit code.
api() {
  local body rc=0
  body="$(curl -sS --fail-with-body -H 'content-type: application/json' -H "authorization: Bearer $KILN_API_KEY" "$@")" \
    || rc=$?
  if [ "$rc" != 0 ]; then
    echo "request failed (curl exit $rc): $*" >&2
    echo "answer: $body" >&2
    return "$rc"
  fi
  printf '%s\n' "$body"
}
# A command that fails outside an `|| fail` stops the script (set -e): name it, with the end of each
# container's log, so a red CI says where and why.
on_error() {
  echo "FAIL: line $1 exited $2: $3" >&2
  for c in "$name" "$name-2"; do
    docker logs --tail 20 "$c" 2>&1 | sed "s/^/[$c] /" >&2 || true
  done
}
trap 'on_error "$LINENO" "$?" "$BASH_COMMAND"' ERR
# Polls a job until it leaves queued/running; prints its final status.
wait_for() {
  local status
  for _ in $(seq 1 600); do
    status="$(api "$base_url/jobs/$1" | jq -r .status)"
    case "$status" in queued|running) sleep 1 ;; *) echo "$status"; return 0 ;; esac
  done
  fail "job $1 still $status after 10 minutes"
}

step "run, /readyz, HEALTHCHECK"
run_container "$name"
echo "ready at $base_url"
# The image has no `id` to exec: ask the host which user the container's kiln process runs as.
uid="$(docker top "$name" -eo pid,uid,comm | awk '$3 == "kiln" { print $2; exit }')"
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "the container's kiln runs as uid '${uid}', not as the kiln user"
echo "kiln runs as uid $uid"
for _ in $(seq 1 60); do
  health="$(docker inspect -f '{{.State.Health.Status}}' "$name")"
  [ "$health" = healthy ] && break
  sleep 1
done
[ "$health" = healthy ] || fail "health check says $health"
echo "health: $health"
# The image's Vulkan loader and llvmpipe give wgpu a device even without a GPU.
gpus="$(api "$base_url/backends" | jq -c '[.backends[].devices[] | select(.usable and .api == "vulkan") | "\(.id): \(.name)"]')"
echo "WGPU devices: $gpus"
[ "$gpus" != "[]" ] || fail "no usable Vulkan device in the image: $(api "$base_url/backends")"

step "API keys: the container binds 0.0.0.0, so every route but the probes needs the key"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base_url/jobs")" = 401 ] || fail "GET /jobs without a key was not 401"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'authorization: Bearer kiln_wrong-key-0000' "$base_url/jobs")" = 401 ] \
  || fail "GET /jobs with a wrong key was not 401"
api "$base_url/jobs" >/dev/null || fail "GET /jobs with the key failed"

step "the README's GitHub Actions job (its run: script, against this container)"
# The script of the yaml block under "### Run in CI", unindented.
ci_script="$(awk '/^### Run in CI/ { section = 1 } section && /^ *run: [|]$/ { body = 1; next }
  body && /^```/ { exit } body { print substr($0, 11) }' README.md)"
[ -n "$ci_script" ] || fail "no run: script found under '### Run in CI' in README.md"
KILN="$base_url" KILN_API_KEY="$KILN_API_KEY" bash --noprofile --norc -eo pipefail -c "$ci_script" || fail "the README's CI job failed"

step "the jobs that script trained: LeNet-BN on synthetic images and a GRU language model"
# The id of the job submitted from an example file, found by the example's name.
job_of() {
  api "$base_url/jobs?limit=100" | jq -r --arg name "$(jq -r .name "$1")" \
    '[.jobs[] | select(.name == $name)] | if length == 1 then .[0].id else error("not one job") end'
}
lenet="$(job_of examples/lenet-bn-synthetic.json)" || fail "no single job from examples/lenet-bn-synthetic.json"
gru="$(job_of examples/gru-synthetic-text.json)" || fail "no single job from examples/gru-synthetic-text.json"
for id in "$lenet" "$gru"; do
  status="$(api "$base_url/jobs/$id" | jq -r .status)"
  [ "$status" = succeeded ] || fail "job $id $status: $(api "$base_url/jobs/$id" | jq -r .error)"
done
lenet_acc="$(api "$base_url/jobs/$lenet/metrics" | jq '.epochs[-1].test_accuracy')"
gru_ppl="$(api "$base_url/jobs/$gru/metrics" | jq '.epochs[-1].perplexity')"
echo "LeNet-BN test accuracy $lenet_acc; GRU perplexity $gru_ppl"
jq -e -n "$lenet_acc > 0.9" >/dev/null || fail "LeNet-BN reached only $lenet_acc"
jq -e -n "$gru_ppl < 5" >/dev/null || fail "the GRU's perplexity is $gru_ppl"

step "checkpoint download and generate"
checkpoint="$(api "$base_url/jobs/$lenet/checkpoints" | jq -c '.[-1]')"
curl -sSf -H "authorization: Bearer $KILN_API_KEY" -o "$context/checkpoint.bpk" "$base_url/jobs/$lenet/checkpoints/$(jq -r .id <<<"$checkpoint")"
[ "$(sha256sum "$context/checkpoint.bpk" | cut -d' ' -f1)" = "$(jq -r .sha256 <<<"$checkpoint")" ] \
  || fail "the checkpoint's sha256 differs from its listing"
echo "checkpoint $(jq -r .id <<<"$checkpoint"): $(stat -c %s "$context/checkpoint.bpk") bytes, sha256 matches"
rm -f "$context/checkpoint.bpk"
text="$(api -X POST "$base_url/jobs/$gru/generate" -d '{"prefix": "the ", "max_tokens": 40}' | jq -r .text)"
echo "generated: $text"
[ "${#text}" -ge 40 ] || fail "generate returned '$text'"

step "the README's language-model example on the built-in Time Machine (no file in the volume)"
tm="$(jq '.name = "smoke: time machine" | .training.epochs = 2 | .model.hidden = 32 | .checkpoint.every = 1' \
  examples/rnn-time-machine.json | api -X POST "$base_url/jobs" -d @- | jq -r .id)" \
  || fail "examples/rnn-time-machine.json was refused"
[ "$(wait_for "$tm")" = succeeded ] || fail "the Time Machine job: $(api "$base_url/jobs/$tm" | jq -c '{status, error}')"
tm_ppl="$(api "$base_url/jobs/$tm/metrics" | jq '.epochs[-1].perplexity')"
echo "The Time Machine, 2 epochs: perplexity $tm_ppl"
jq -e -n "$tm_ppl > 1 and $tm_ppl < 28" >/dev/null || fail "perplexity $tm_ppl over the book's 28 symbols"

step "docker stop during training: checkpoint and exit within 10 s"
# As many epochs as a job may have (an epoch of this one takes 0.3 s on a 2-core machine in the
# debug build; a fast machine trained 200 in the time the test took to cancel them).
long="$(jq '.name = "smoke: interrupted" | .training.epochs = 1000 | .checkpoint = {"every": 1, "keep_last": 1}' \
  examples/lenet-bn-synthetic.json | api -X POST "$base_url/jobs" -d @- | jq -r .id)"
epochs_before=0
for _ in $(seq 1 120); do
  epochs_before="$(api "$base_url/jobs/$long/metrics" | jq '.epochs | length')"
  [ "$epochs_before" -ge 2 ] && break
  sleep 0.5
done
[ "$epochs_before" -ge 2 ] || fail "the long job did not train 2 epochs within 60 s"
start=$(date +%s.%N)
docker stop -t 10 "$name" >/dev/null
stop_seconds="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
exit_code="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
echo "stopped in $stop_seconds s, exit code $exit_code, after $epochs_before epochs"
[ "$exit_code" = 0 ] || { docker logs --tail 20 "$name" >&2; fail "exit code $exit_code (137: killed after the 10 s grace)"; }
jq -e -n "$stop_seconds < 10" >/dev/null || fail "docker stop took $stop_seconds s"
docker logs "$name" 2>&1 | tail -n 3

step "a new container on the same volume"
run_container "$name-2"
for id in "$lenet" "$gru"; do
  [ "$(api "$base_url/jobs/$id" | jq -r .status)" = succeeded ] || fail "job $id is not succeeded after the restart"
done
[ "$(api "$base_url/jobs/$lenet/metrics" | jq '.epochs[-1].test_accuracy')" = "$lenet_acc" ] \
  || fail "LeNet-BN's metrics changed across the restart"
[ "$(api "$base_url/jobs/$gru/checkpoints" | jq length)" -ge 1 ] || fail "the GRU's checkpoints are gone"
api -X POST "$base_url/jobs/$gru/generate" -d '{"prefix": "the ", "max_tokens": 40}' | jq -e '.text | length >= 40' >/dev/null \
  || fail "generate failed after the restart"
for _ in $(seq 1 60); do
  after="$(api "$base_url/jobs/$long/metrics" | jq '.epochs | length')"
  [ "$after" -gt "$epochs_before" ] && break
  sleep 0.5
done
echo "interrupted job: $(api "$base_url/jobs/$long" | jq -r .status), epochs $epochs_before before the stop, $after now"
[ "$after" -gt "$epochs_before" ] || fail "the interrupted job did not resume"
# grep -c reads the whole log: grep -q could close the pipe early and fail it under pipefail.
[ "$(docker logs "$name-2" 2>&1 | grep -c "resuming from checkpoint")" -ge 1 ] \
  || fail "the new container did not resume the interrupted job from its checkpoint"
# A cancel answers 409 only if the job has ended since: then it must have succeeded.
if api -X POST "$base_url/jobs/$long/cancel" >/dev/null; then
  [ "$(wait_for "$long")" = cancelled ] || fail "the interrupted job did not cancel"
else
  [ "$(api "$base_url/jobs/$long" | jq -r .status)" = succeeded ] || fail "the interrupted job could not be cancelled"
  echo "the interrupted job finished all its epochs before the cancel"
fi
docker stop -t 10 "$name-2" >/dev/null

echo
echo "docker smoke test passed in $SECONDS s"
