#!/usr/bin/env bash
# The README's "Scale out" walk-through, as a test: docker/compose.yml up (PostgreSQL and two kiln
# replicas on one shared volume) with the kiln image already built (kiln:latest, as
# docker/smoke-test.sh --build-only makes it), a job submitted to replica a and watched on b,
# `docker kill` of the replica training it, the job running again on the other one and finishing
# there with every step recorded once. Everything it starts is removed at the end.
#
#   docker/compose-test.sh [KILN_IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_IMAGE="${1:-kiln:latest}"
export KILN_BASE_IMAGE="${KILN_BASE_IMAGE:-$(docker/base-image.sh)}"
export KILN_API_KEY="compose-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KILN_A_PORT="$(free_port)"
KILN_B_PORT="$(free_port)"
export KILN_A_PORT KILN_B_PORT
project="kiln-compose-$$"
compose() { docker-compose -p "$project" -f docker/compose.yml "$@"; }
trap 'rc=$?; [ "$rc" = 0 ] || compose logs --no-color --tail 40 >&2 || true
      compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
api() {  # METHOD PORT PATH [BODY]
  curl -sS --fail-with-body -X "$1" -H "authorization: Bearer $KILN_API_KEY" -H 'content-type: application/json' \
    ${4:+--data "$4"} "http://127.0.0.1:$2$3"
}
wait_for() {  # PORT JOB JQ-CONDITION WHAT
  for _ in $(seq 1 600); do
    if api GET "$1" "/jobs/$2" 2>/dev/null | jq -e "$3" >/dev/null; then return 0; fi
    sleep 0.5
  done
  fail "$4: $(api GET "$1" "/jobs/$2" || true)"
}

step "docker-compose up: PostgreSQL and replicas a (:$KILN_A_PORT) and b (:$KILN_B_PORT)"
compose build -q postgres
compose up -d
for port in "$KILN_A_PORT" "$KILN_B_PORT"; do
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.5; done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "replica on :$port never got ready"
done
api GET "$KILN_A_PORT" /cluster | jq -e '.replicas | length == 2' >/dev/null || fail "two replicas: $(api GET "$KILN_A_PORT" /cluster)"

step "submit to a, watch on b"
# 1,500 steps an epoch, a checkpoint at the end of each: killed in the second epoch, it resumes
# from the first one.
job='{"name":"compose","model":{"kind":"lenet_bn"},"backend":"cpu","data":{"dataset":"synthetic_images","train_size":96000,"test_size":128},"training":{"epochs":2,"batch_size":64,"log_every":1,"optimizer":{"kind":"sgd","lr":0.1}},"checkpoint":{"every":1}}'
id="$(api POST "$KILN_A_PORT" /jobs "$job" | jq -r .id)"
wait_for "$KILN_B_PORT" "$id" '.status == "running" and .progress.step > 1550' "training into its second epoch"
owner="$(api GET "$KILN_B_PORT" "/jobs/$id" | jq -r .replica)"
address="$(api GET "$KILN_B_PORT" /cluster | jq -r --arg r "$owner" '.replicas[] | select(.id == $r) | .address')"
case "$address" in
  *":$KILN_A_PORT") victim=kiln-a; survivor="$KILN_B_PORT" ;;
  *":$KILN_B_PORT") victim=kiln-b; survivor="$KILN_A_PORT" ;;
  *) fail "no replica at $address" ;;
esac
echo "job $id trains on $victim ($owner)"

step "docker kill $victim: the job moves to the other replica"
docker kill "$(compose ps -q "$victim")" >/dev/null
killed=$(date +%s)
wait_for "$survivor" "$id" ".status == \"running\" and .replica != \"$owner\"" "running again elsewhere"
echo "running again on the other replica $(( $(date +%s) - killed )) s after the kill (lease 10 s)"
wait_for "$survivor" "$id" '.status == "succeeded"' "finished"
total="$(api GET "$survivor" "/jobs/$id" | jq .progress.steps)"
# Every step once, in order (read a page of at most 1,000 at a time), and every epoch once.
steps="" after=0
while :; do
  page="$(api GET "$survivor" "/jobs/$id/metrics?limit=1000&after=$after")"
  [ "$(jq '.steps | length' <<<"$page")" -gt 0 ] || break
  steps="$steps$(jq -r '.steps[].step' <<<"$page")"$'\n'
  after="$(jq -r .next_after <<<"$page")"
done
[ "$steps" = "$(seq 1 "$total")"$'\n' ] || fail "every step once: $(tr '\n' ' ' <<<"$steps" | head -c 300)..."
jq -e '[.epochs[].epoch] == [1, 2]' <<<"$page" >/dev/null || fail "every epoch once: $(jq -c .epochs <<<"$page")"
statuses="$(api GET "$survivor" "/jobs/$id/events" | awk '/^event: status/ { getline; sub(/^data: /, ""); print }' | jq -r .status | tr '\n' ' ')"
[ "$statuses" = "queued running queued running succeeded " ] || fail "the event stream shows the move: $statuses"
echo "PASS: the job moved from $victim and finished on the other replica; events: $statuses"
