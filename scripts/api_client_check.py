"""Drives a live kiln with the Python client that openapi-python-client generated from
openapi/openapi.json (scripts/api-client makes it and runs this): submit a small language model,
show it, read its metrics, wait for a checkpoint, list the checkpoints, generate text, submit a
longer job and cancel it, delete both. Every answer is checked as the typed value the client
parsed, and each step prints one line.

Usage: python scripts/api_client_check.py BASE_URL API_KEY   (kiln_client importable)
"""

import sys
import time

import httpx
from kiln_client import AuthenticatedClient
from kiln_client.api.jobs import cancel, checkpoints, generate, metrics, remove, show, submit
from kiln_client.models import (
    CheckpointInfo,
    DatasetName,
    GenerateRequest,
    Generated,
    Job,
    JobSpec,
    JobStatus,
    Metrics,
    ModelKind,
    Problem,
    RawCheckpoint,
    RawData,
    RawModel,
    RawTraining,
    TextDataSpec,
    TextDataSpecDataset,
)

#: How long any wait below may take, in seconds.
PATIENCE = 300


def call(operation, status, kind, **arguments):
    """The answer of `operation` (a generated module) parsed as `kind`; fails unless the server
    answered `status`."""
    response = operation.sync_detailed(client=client, **arguments)
    assert response.status_code == status, (
        f"{operation.__name__}: {response.status_code} (wanted {status}): {response.content!r}"
    )
    assert kind is None or isinstance(response.parsed, kind), (
        f"{operation.__name__}: parsed as {type(response.parsed).__name__}, not {kind}"
    )
    return response.parsed


def until(what, probe):
    """The first truthy answer of `probe`, polled until PATIENCE runs out."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.2)
    sys.exit(f"gave up waiting {PATIENCE} s for {what}")


def language_model(name, chars, epochs):
    """A GRU on generated text, `epochs` long, with a checkpoint every epoch."""
    return JobSpec(
        name=name,
        model=RawModel(kind=ModelKind.RNN_LM, cell="gru", hidden=16),
        data=RawData(dataset=DatasetName.SYNTHETIC_TEXT, chars=chars, num_steps=8),
        training=RawTraining(epochs=epochs, batch_size=8),
        checkpoint=RawCheckpoint(every=1, keep_last=2),
    )


def step(line):
    print(f"ok  {line}", flush=True)


base_url, key = sys.argv[1:3]
client = AuthenticatedClient(base_url=base_url, token=key, timeout=httpx.Timeout(60.0), raise_on_unexpected_status=True)
unfinished = {JobStatus.QUEUED, JobStatus.RUNNING}

job = call(submit, 201, Job, body=language_model("api client: small", 2000, 2))
assert job.status in unfinished, job.status
assert isinstance(job.spec.data, TextDataSpec), type(job.spec.data)
assert job.spec.data.dataset == TextDataSpecDataset.SYNTHETIC_TEXT, job.spec.data.dataset
assert job.spec.checkpoint.every == 1 and job.progress.epochs == 2, (job.spec.checkpoint, job.progress)
step(f"submit: job {job.id} {job.status.value}, data {job.spec.data.dataset.value}")
job_id = str(job.id)

shown = call(show, 200, Job, id=job_id)
assert shown.id == job.id and shown.spec.to_dict() == job.spec.to_dict(), shown
step(f"show: {shown.status.value}, {shown.progress.epochs} epochs")

measured = until(
    "step metrics",
    lambda: (m := call(metrics, 200, Metrics, id=job_id)).steps and m,
)
assert measured.status in unfinished | {JobStatus.SUCCEEDED}, measured.status
assert all(isinstance(point.loss, float) and point.step >= 1 for point in measured.steps), measured.steps
step(f"metrics: {measured.status.value}, {len(measured.steps)} step points, loss {measured.steps[-1].loss:.3f}")

listed = until("a checkpoint", lambda: call(checkpoints, 200, list, id=job_id))
assert all(isinstance(c, CheckpointInfo) and c.epoch >= 1 and c.bytes_ > 0 for c in listed), listed
step(f"checkpoints: {len(listed)}, the first at epoch {listed[0].epoch}, {listed[0].bytes_} bytes")

generated = call(generate, 200, Generated, id=job_id, body=GenerateRequest(prefix="the ", max_tokens=20))
assert isinstance(generated.text, str) and generated.text, generated
assert generated.checkpoint in {c.id for c in call(checkpoints, 200, list, id=job_id)}, generated.checkpoint
step(f"generate: {generated.text!r} after {generated.prompt!r}, checkpoint {generated.checkpoint}")

done = until("the small job's end", lambda: (j := call(show, 200, Job, id=job_id)).status not in unfinished and j)
assert done.status == JobStatus.SUCCEEDED, (done.status, done.error)
final = call(metrics, 200, Metrics, id=job_id)
assert len(final.epochs) == 2 and all(e.perplexity and e.perplexity > 1 for e in final.epochs), final.epochs
step(f"finished: {done.status.value}, perplexity {final.epochs[-1].perplexity:.2f} after epoch 2")

long = call(submit, 201, Job, body=language_model("api client: long", 20000, 200))
long_id = str(long.id)
until(
    "the long job's first step",
    lambda: (j := call(show, 200, Job, id=long_id)).status == JobStatus.RUNNING and j.progress.step > 0,
)
cancelled = call(cancel, 200, Job, id=long_id)
assert cancelled.status in {JobStatus.RUNNING, JobStatus.CANCELLED}, cancelled.status
ended = until("the cancel", lambda: (j := call(show, 200, Job, id=long_id)).status != JobStatus.RUNNING and j)
assert ended.status == JobStatus.CANCELLED, ended.status
step(f"cancel: job {long.id} {ended.status.value} after {ended.progress.step} steps")

for removed in (job_id, long_id):
    call(remove, 204, None, id=removed)
    gone = call(show, 404, Problem, id=removed)
    assert gone.status == 404, gone
step("delete: both jobs deleted, and shown as 404 problems")
