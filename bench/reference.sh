#!/bin/sh
# The reference session of docs/bench.md ("Results"): every run, one after the other, server on
# CPU 0 and the tool on CPU 1. Takes about 10 minutes; each run prints its table row and JSON line.
# Usage: sh bench/reference.sh [extra options for every run]   (from the repository root)
set -e
B=".venv/bin/python -m bench"
P="--seconds 10 --server-cpu 0 --tool-cpu 1 --json --no-progress $*"
for m in 40 100; do for s in veche janus; do $B broadcast --server $s -m $m $P; done; done
for n in 4 8; do for s in veche janus; do $B meeting --server $s -n $n $P; done; done
for s in veche janus baseline; do $B broadcast --server $s -m 10 $P; done
$B broadcast --server veche -m 80 $P
$B broadcast --server veche -m 40 $P
$B broadcast --server veche -m 100 $P
$B sweep --server veche --start 40 --step 40 --max 160 $P
# Veche watched over WHEP (the hall publishing over WHIP), as an external player would.
$B broadcast --server veche --veche-whip -m 100 $P
$B sweep --server veche --veche-whip --start 40 --step 40 --max 160 $P
# A recorded meeting, not pinned: the recording process is the server's child and would
# otherwise share the forwarding core (on a real server it has cores of its own).
$B meeting --server veche -n 4 --record --seconds 10 --json --no-progress $*
# The broadcast's HLS programme with one player, not pinned for the same reason.
$B broadcast --server veche -m 10 --hls --seconds 10 --json --no-progress $*
