"""The steady state of a training job's first two epochs, from a kiln server's debug log
(KILN_LOG=warn,kiln::train=debug) of that one job on stdin, up to its second `epoch done` line:
its `step timed` lines (a step's seconds: recording it, plus its share of the read that waited
for the device), `evaluation batch timed` and `evaluation read` lines. Prints the median step, the slowest step after the first
(how many times the median), and the slowest evaluation batch (its share of the evaluation's one
read included): a shape met for the first time mid-epoch shows as many times the median.

usage: python3 bench/step_times.py LABEL < server.log
"""
import re
import statistics
import sys


def field(line, name):
    return float(re.search(r"\b" + name + r"=([0-9.e+-]+)", line).group(1))


def main():
    label, steps, evaluation, unread, epochs = sys.argv[1], [], [], [], 0
    for line in sys.stdin:
        if epochs >= 2:
            break
        if "step timed" in line:
            steps.append((int(field(line, "step")), field(line, "seconds")))
        elif "evaluation batch timed" in line:
            unread.append(field(line, "seconds"))
        elif "evaluation read" in line:
            # The read waited for the batches since the last one: each gets an even share.
            share = field(line, "seconds") / max(len(unread), 1)
            evaluation += [b + share for b in unread]
            unread = []
        elif "epoch done" in line:
            epochs += 1
    if len(steps) < 2:
        print(label, "no step timings in the log")
        return
    later = steps[1:]
    median = statistics.median(t for _, t in later)
    step, slowest = max(later, key=lambda s: s[1])
    worst = max(evaluation, default=0.0)
    print(f"{label} median step {median * 1e3:.1f} ms; slowest step after the first: step {step}, "
          f"{slowest * 1e3:.1f} ms ({slowest / median:.1f}x the median); "
          f"slowest evaluation batch {worst * 1e3:.1f} ms ({worst / median:.1f}x)")


if __name__ == "__main__":
    main()
