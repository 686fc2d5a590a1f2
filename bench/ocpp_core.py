"""Throughput of our OCPP-J core against the ``ocpp`` library on received CALLs.

What it measures: frames per second for the whole server-side handling of one
received CALL, from its WebSocket text to the CALLRESULT text that answers it:

    decode the frame -> validate the request payload against the OCA schema
    -> build the response payload -> validate it -> encode the CALLRESULT

on the same frames, in the same process, for:

* **ours**: ``plugstream.ocpp.frames.decode`` (orjson) ->
  ``schemas(version).validate(action, "request", ...)`` (fastjsonschema,
  compiled and cached) -> ``validate(action, "response", ...)`` ->
  ``encode(CallResult(...))``;
* **ours (session)**: the same work through ``RpcSession.receive`` /
  ``RpcSession.result``, as the server runs it (call bookkeeping included);
* **ocpp lib**: mobilityhouse ``ocpp`` (the pinned version), the calls its
  ``ChargePoint.route_message`` / ``_handle_call`` makes: ``messages.unpack``
  -> ``messages._validate_payload`` (jsonschema ``Draft4Validator``, cached)
  -> ``Call.create_call_result`` -> ``_validate_payload`` -> ``to_json``.
  ``ocpp.messages.ASYNC_VALIDATION`` is set to False so that validation runs
  in-thread (``_handle_call`` would otherwise hand it to a thread pool, which
  only adds cost). This is the headline comparison: it leaves out the
  library's camelCase/snake_case conversions, so it flatters the library;
* **ocpp ChargePoint path** (for information): the above plus what
  ``_handle_call`` does around the handler: ``camel_to_snake_case`` of the
  request, ``inspect.signature`` of the handler, a handler returning the
  library's ``call_result`` dataclass, ``serialize_as_dict``,
  ``remove_nones`` and ``snake_to_camel_case`` of the response.

No I/O and no event loop on either side: this is the protocol core alone.
Note that fastjsonschema also checks ``format`` (``date-time``) while the
library's ``Draft4Validator`` has no format checker, so ours does a little
more work per frame.

The frames are a fleet-like mix (``MIX`` below): OCPP 1.6 MeterValues with 10
sampled values (energy register, power, current L1-L3, voltage L1-L3, SoC,
temperature), OCPP 2.0.1 TransactionEvent ``Updated`` with 6 sampled values,
and some StatusNotification and Heartbeat of both versions; every frame has
its own message id, timestamps and readings. Before timing, every side must
accept every frame, give the same CALLRESULT (compared parsed) and reject an
invalid one. Then ``--rounds`` rounds, the order of the sides rotated each
round, time the mix and each message type separately; the figure kept is the
best round (median also printed), for a timing budget of about ``--seconds``.

Goal: ours handles at least 10x the frames per second of the ``ocpp`` library.

Run it from the repository root:

    python bench/ocpp_core.py                  # ~12 s of timing
    python bench/ocpp_core.py --seconds 30 --frames 4000 --rounds 7

It prints a table, then as its last line one JSON object (``ours_fps``,
``ocpp_lib_fps``, ``ratio``, ``per_type``, ...) for scripts to read.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import ocpp.exceptions
import ocpp.messages
import ocpp.v16.call_result
import ocpp.v201.call_result
import orjson
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.messages import Call as LibCall
from ocpp.messages import _validate_payload as lib_validate_payload
from ocpp.messages import unpack as lib_unpack

from plugstream.ocpp.errors import OcppError
from plugstream.ocpp.frames import Call, CallResult, decode, encode
from plugstream.ocpp.schemas import schemas
from plugstream.ocpp.session import CallReceived, RpcSession, Transmit
from plugstream.ocpp.version import OcppVersion
from procs import dist_version, print_summary

GOAL_RATIO: Final = 10.0
V16: Final = OcppVersion.V16
V201: Final = OcppVersion.V201

# Validate in-thread, as a server that cares about latency would configure it.
ASYNC_VALIDATION_WAS: Final[object] = getattr(ocpp.messages, "ASYNC_VALIDATION", None)
if ASYNC_VALIDATION_WAS is not None:
    ocpp.messages.ASYNC_VALIDATION = False

NOW: Final = "2025-03-14T09:26:53.589Z"  # the CSMS clock in Heartbeat responses
START: Final = datetime(2025, 3, 14, 8, 0, 0, tzinfo=UTC)

# --- the frames ----------------------------------------------------------------


def _ts(rng: random.Random) -> str:
    at = START + timedelta(seconds=rng.randrange(0, 3600), milliseconds=rng.randrange(1000))
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _v16_meter_values(rng: random.Random) -> dict[str, Any]:
    amps = [rng.uniform(14.0, 32.0) for _ in range(3)]
    volts = [rng.uniform(225.0, 235.0) for _ in range(3)]
    watts = sum(a * v for a, v in zip(amps, volts, strict=True))

    def sv(value: str, measurand: str, unit: str, phase: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": value,
            "context": "Sample.Periodic",
            "format": "Raw",
            "measurand": measurand,
        }
        if phase is not None:
            out["phase"] = phase
        location = {"SoC": "EV", "Temperature": "Body"}.get(measurand, "Outlet")
        out["location"] = location
        out["unit"] = unit
        return out

    sampled = [
        sv(f"{rng.uniform(1e3, 9e6):.1f}", "Energy.Active.Import.Register", "Wh"),
        sv(f"{watts:.1f}", "Power.Active.Import", "W"),
        *(
            sv(f"{a:.2f}", "Current.Import", "A", p)
            for a, p in zip(amps, ("L1", "L2", "L3"), strict=True)
        ),
        *(
            sv(f"{v:.1f}", "Voltage", "V", p)
            for v, p in zip(volts, ("L1-N", "L2-N", "L3-N"), strict=True)
        ),
        sv(str(rng.randrange(5, 100)), "SoC", "Percent"),
        sv(f"{rng.uniform(20.0, 60.0):.1f}", "Temperature", "Celsius"),
    ]
    return {
        "connectorId": rng.randrange(1, 3),
        "transactionId": rng.randrange(1, 2**31),
        "meterValue": [{"timestamp": _ts(rng), "sampledValue": sampled}],
    }


def _v16_status(rng: random.Random) -> dict[str, Any]:
    status = rng.choice(["Available", "Preparing", "Charging", "SuspendedEV", "Finishing"])
    return {
        "connectorId": rng.randrange(0, 3),
        "errorCode": "NoError",
        "status": status,
        "timestamp": _ts(rng),
        "info": "",
        "vendorErrorCode": "0",
    }


def _empty(rng: random.Random) -> dict[str, Any]:
    return {}


def _v201_transaction_event(rng: random.Random) -> dict[str, Any]:
    amps = [round(rng.uniform(14.0, 32.0), 2) for _ in range(3)]
    volts = round(rng.uniform(225.0, 235.0), 1)

    def sv(value: float, measurand: str, unit: str, phase: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"value": value, "context": "Sample.Periodic", "measurand": measurand}
        if phase is not None:
            out["phase"] = phase
        out["location"] = "Outlet"
        out["unitOfMeasure"] = {"unit": unit}
        return out

    sampled = [
        sv(round(rng.uniform(1e3, 9e6), 1), "Energy.Active.Import.Register", "Wh"),
        sv(round(sum(amps) * volts, 1), "Power.Active.Import", "W"),
        *(sv(a, "Current.Import", "A", p) for a, p in zip(amps, ("L1", "L2", "L3"), strict=True)),
        {
            "value": rng.randrange(5, 100),
            "context": "Sample.Periodic",
            "measurand": "SoC",
            "location": "EV",
            "unitOfMeasure": {"unit": "Percent"},
        },
    ]
    return {
        "eventType": "Updated",
        "timestamp": _ts(rng),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": rng.randrange(1, 500),
        "transactionInfo": {
            "transactionId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "chargingState": "Charging",
        },
        "evse": {"id": rng.randrange(1, 3), "connectorId": 1},
        "meterValue": [{"timestamp": _ts(rng), "sampledValue": sampled}],
    }


def _v201_status(rng: random.Random) -> dict[str, Any]:
    return {
        "timestamp": _ts(rng),
        "connectorStatus": rng.choice(["Available", "Occupied", "Unavailable"]),
        "evseId": rng.randrange(1, 3),
        "connectorId": 1,
    }


@dataclass(frozen=True, slots=True)
class Kind:
    """One message type of the mix."""

    key: str
    version: OcppVersion
    action: str
    weight: int  # percent of the mix
    request: Callable[[random.Random], dict[str, Any]]
    response: dict[str, Any]  # what our CSMS answers
    # the handler a ChargePoint subclass would register (returns the library's dataclass)
    handler: Callable[..., Any]


MIX: Final = (
    Kind(
        "1.6 MeterValues",
        V16,
        "MeterValues",
        40,
        _v16_meter_values,
        {},
        lambda **_: ocpp.v16.call_result.MeterValues(),
    ),
    Kind(
        "2.0.1 TransactionEvent",
        V201,
        "TransactionEvent",
        30,
        _v201_transaction_event,
        {},
        lambda **_: ocpp.v201.call_result.TransactionEvent(),
    ),
    Kind(
        "1.6 StatusNotification",
        V16,
        "StatusNotification",
        10,
        _v16_status,
        {},
        lambda **_: ocpp.v16.call_result.StatusNotification(),
    ),
    Kind(
        "1.6 Heartbeat",
        V16,
        "Heartbeat",
        8,
        _empty,
        {"currentTime": NOW},
        lambda **_: ocpp.v16.call_result.Heartbeat(current_time=NOW),
    ),
    Kind(
        "2.0.1 StatusNotification",
        V201,
        "StatusNotification",
        6,
        _v201_status,
        {},
        lambda **_: ocpp.v201.call_result.StatusNotification(),
    ),
    Kind(
        "2.0.1 Heartbeat",
        V201,
        "Heartbeat",
        6,
        _empty,
        {"currentTime": NOW},
        lambda **_: ocpp.v201.call_result.Heartbeat(current_time=NOW),
    ),
)
KINDS: Final = {(k.version, k.action): k for k in MIX}

Work = list[tuple[OcppVersion, str]]


def make_frames(count: int, seed: int) -> dict[str, Work]:
    """``count`` CALL texts in the mix's proportions, shuffled; keyed by kind plus ``"mix"``."""
    rng = random.Random(seed)
    total = sum(k.weight for k in MIX)
    per_kind = {k.key: max(1, round(count * k.weight / total)) for k in MIX}
    frames: list[tuple[str, OcppVersion, str]] = []
    for kind in MIX:
        for _ in range(per_kind[kind.key]):
            mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            text = orjson.dumps([2, mid, kind.action, kind.request(rng)]).decode()
            frames.append((kind.key, kind.version, text))
    rng.shuffle(frames)
    out: dict[str, Work] = {"mix": [(v, t) for _, v, t in frames]}
    for kind in MIX:
        out[kind.key] = [(v, t) for key, v, t in frames if key == kind.key]
    return out


def respond(version: OcppVersion, action: str) -> dict[str, Any]:
    """The response payload our application hands back (a fresh dict, as a handler would)."""
    return dict(KINDS[(version, action)].response)


# --- the sides -----------------------------------------------------------------

Process = Callable[[OcppVersion, str], str]


def ours(version: OcppVersion, text: str) -> str:
    frame = decode(text, version)
    if type(frame) is not Call:
        raise AssertionError(f"not a CALL: {text[:60]}")
    table = schemas(version)
    problem = table.validate(frame.action, "request", frame.payload)
    if problem is not None:
        raise problem
    payload = respond(version, frame.action)
    problem = table.validate(frame.action, "response", payload)
    if problem is not None:
        raise problem
    return encode(CallResult(frame.message_id, payload))


def make_ours_session() -> Process:
    sessions = {v: RpcSession(v, clock=time.monotonic) for v in (V16, V201)}

    def process(version: OcppVersion, text: str) -> str:
        session = sessions[version]
        events = session.receive(text)
        got = events[0]
        if len(events) != 1 or type(got) is not CallReceived:
            raise AssertionError(f"session refused the frame: {events}")
        sent = session.result(got.message_id, respond(version, got.action))[0]
        if type(sent) is not Transmit:
            raise AssertionError(f"session refused the response: {sent}")
        return sent.text

    return process


def ocpp_lib(version: OcppVersion, text: str) -> str:
    ocpp_version = version.value
    msg = lib_unpack(text)
    if type(msg) is not LibCall:
        raise AssertionError(f"not a CALL: {text[:60]}")
    lib_validate_payload(msg, ocpp_version)
    response = msg.create_call_result(respond(version, msg.action))
    lib_validate_payload(response, ocpp_version)
    out: str = response.to_json()
    return out


def ocpp_chargepoint(version: OcppVersion, text: str) -> str:
    """``ChargePoint._handle_call`` without its event loop and socket."""
    ocpp_version = version.value
    msg = lib_unpack(text)
    if type(msg) is not LibCall:
        raise AssertionError(f"not a CALL: {text[:60]}")
    lib_validate_payload(msg, ocpp_version)
    snake_case_payload = camel_to_snake_case(msg.payload)
    handler = KINDS[(version, msg.action)].handler
    if "call_unique_id" in inspect.signature(handler).parameters:
        result = handler(**snake_case_payload, call_unique_id=msg.unique_id)
    else:
        result = handler(**snake_case_payload)
    payload = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
    response = msg.create_call_result(payload)
    lib_validate_payload(response, ocpp_version)
    out: str = response.to_json()
    return out


@dataclass(frozen=True, slots=True)
class Side:
    key: str
    label: str
    process: Process


def make_sides() -> list[Side]:
    return [
        Side("ours", "ours", ours),
        Side("ours_session", "ours (session)", make_ours_session()),
        Side("ocpp_lib", "ocpp lib", ocpp_lib),
        Side("ocpp_chargepoint", "ocpp CP path", ocpp_chargepoint),
    ]


# --- checks and timing ---------------------------------------------------------


def sanity_check(sides: list[Side], work: Work) -> None:
    """Every side accepts every frame, answers the same, and rejects an invalid frame."""
    for version, text in work:
        answers = {side.key: side.process(version, text) for side in sides}
        parsed = {key: json.loads(answer) for key, answer in answers.items()}
        reference = parsed["ours"]
        if reference[0] != 3 or reference[1] != json.loads(text)[1]:
            raise AssertionError(f"not the CALLRESULT of {text[:60]}: {answers['ours']}")
        for key, value in parsed.items():
            if value != reference:
                raise AssertionError(f"{key} answered {answers[key]}, ours {answers['ours']}")
    bad = orjson.loads(next(t for v, t in work if v is V16 and '"MeterValues"' in t))
    bad[3]["meterValue"][0]["sampledValue"][0]["measurand"] = "Energy.Flux.Capacitor"
    bad_text = orjson.dumps(bad).decode()
    for side in sides:
        try:
            side.process(V16, bad_text)
        except (OcppError, AssertionError, ocpp.exceptions.OCPPError):
            continue
        raise AssertionError(f"{side.label} accepted an invalid MeterValues")


def run(process: Process, work: Work, reps: int) -> float:
    """Seconds to handle ``work`` ``reps`` times over."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(reps):
        for version, text in work:
            process(version, text)
    return time.perf_counter() - start


@dataclass(slots=True)
class Series:
    frames: int  # distinct frames in the workload
    fps: list[float]  # one figure per round
    timed: int = 0  # frames handled in all rounds

    @property
    def best(self) -> float:
        return max(self.fps)

    @property
    def median(self) -> float:
        return statistics.median(self.fps)


CALIBRATION_FRAMES: Final = 200
MIN_TIMED_FRAMES: Final = 50


def measure(
    sides: list[Side], workloads: dict[str, Work], seconds: float, rounds: int
) -> dict[str, dict[str, Series]]:
    """fps per side and workload; each round rotates the order of the sides.

    Every side gets the same time, so each runs as many frames as fit in its
    share: whole passes over the workload, or its first frames when a single
    pass would overrun (the mix is shuffled, so any prefix keeps the mix).
    """
    # Warm up and calibrate: estimate each side's fps on each workload.
    fps_guess = {}
    for side in sides:
        for w, work in workloads.items():
            sample = work[:CALIBRATION_FRAMES]
            fps_guess[(side.key, w)] = len(sample) / max(run(side.process, sample, 1), 1e-9)
    share = {w: 0.5 if w == "mix" else 0.5 / (len(workloads) - 1) for w in workloads}
    per_round_side = seconds / rounds / len(sides)
    results = {s.key: {w: Series(len(work), []) for w, work in workloads.items()} for s in sides}
    for r in range(rounds):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        for side in order:
            for w, work in workloads.items():
                wanted = per_round_side * share[w] * fps_guess[(side.key, w)]
                if wanted >= len(work):
                    chunk, reps = work, max(1, round(wanted / len(work)))
                else:
                    chunk, reps = work[: max(MIN_TIMED_FRAMES, math.ceil(wanted))], 1
                elapsed = run(side.process, chunk, reps)
                results[side.key][w].fps.append(len(chunk) * reps / elapsed)
                results[side.key][w].timed += len(chunk) * reps
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="timing budget in seconds (default 12)"
    )
    parser.add_argument(
        "--frames", type=int, default=1000, help="distinct frames in the mix (default 1000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--seed", type=int, default=2025, help="seed of the frames (default 2025)")
    args = parser.parse_args(argv)
    if args.frames < len(MIX) or args.rounds < 1 or args.seconds <= 0:
        parser.error("need --frames >= number of message types, --rounds >= 1, --seconds > 0")

    workloads = make_frames(args.frames, args.seed)
    sides = make_sides()
    began = time.perf_counter()
    sanity_check(sides, workloads["mix"])  # also the warm-up: compiles every validator used
    results = measure(sides, workloads, args.seconds, args.rounds)
    took = time.perf_counter() - began

    ours_r, lib_r = results["ours"], results["ocpp_lib"]
    py = f"{platform.python_implementation()} {platform.python_version()}"
    mix_text = ", ".join(f"{k.key} {k.weight}%" for k in MIX)
    async_note = (
        "ocpp.messages.ASYNC_VALIDATION set to False (validation in-thread)"
        if ASYNC_VALIDATION_WAS is not None
        else "ocpp.messages has no ASYNC_VALIDATION: _validate_payload called directly"
    )
    print(
        "OCPP-J core: received CALL -> decode, validate request, respond, validate response, encode"
    )
    print(
        f"{py}; ocpp {dist_version('ocpp')}, jsonschema {dist_version('jsonschema')}, "
        f"orjson {dist_version('orjson')}, fastjsonschema {dist_version('fastjsonschema')}"
    )
    print(async_note)
    print(f"{len(workloads['mix'])} distinct frames; mix: {mix_text}")
    print(
        f"{args.rounds} rounds, ~{args.seconds:g} s timing budget ({took:.1f} s in all); "
        "frames/s, best round (median in brackets)"
    )
    print()
    head = f"{'workload':<26}{'frames':>7}"
    for side in sides:
        head += f"{side.label:>22}"
    head += f"{'ours/lib':>10}{'session/lib':>13}{'ours/CP':>9}"
    print(head)
    print("-" * len(head))
    for w in workloads:
        line = f"{w:<26}{results['ours'][w].frames:>7}"
        for side in sides:
            s = results[side.key][w]
            line += f"{f'{s.best:,.0f} ({s.median:,.0f})':>22}"
        ratio = ours_r[w].best / lib_r[w].best
        ratio_session = results["ours_session"][w].best / lib_r[w].best
        ratio_cp = ours_r[w].best / results["ocpp_chargepoint"][w].best
        line += f"{ratio:>9.1f}x{ratio_session:>12.1f}x{ratio_cp:>8.1f}x"
        print(line)
    print()
    print("ours/lib: ours vs ocpp lib (headline); session/lib: ours (session) vs ocpp lib;")
    print("ours/CP: ours vs the library with ChargePoint._handle_call's case conversions")
    ratio = ours_r["mix"].best / lib_r["mix"].best
    verdict = "meets" if ratio >= GOAL_RATIO else "MISSES"
    print(f"ours / ocpp lib on the mix: {ratio:.1f}x -- {verdict} the goal of {GOAL_RATIO:g}x")

    per_type = {
        k.key: {
            "frames": ours_r[k.key].frames,
            "ours_fps": round(ours_r[k.key].best),
            "ours_session_fps": round(results["ours_session"][k.key].best),
            "ocpp_lib_fps": round(lib_r[k.key].best),
            "ocpp_chargepoint_fps": round(results["ocpp_chargepoint"][k.key].best),
            "ratio": round(ours_r[k.key].best / lib_r[k.key].best, 2),
        }
        for k in MIX
    }
    summary = {
        "bench": "ocpp_core",
        "ours_fps": round(ours_r["mix"].best),
        "ocpp_lib_fps": round(lib_r["mix"].best),
        "ratio": round(ratio, 2),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": ratio >= GOAL_RATIO,
        "ours_session_fps": round(results["ours_session"]["mix"].best),
        "ocpp_chargepoint_fps": round(results["ocpp_chargepoint"]["mix"].best),
        "ratio_session": round(results["ours_session"]["mix"].best / lib_r["mix"].best, 2),
        "ratio_chargepoint": round(ours_r["mix"].best / results["ocpp_chargepoint"]["mix"].best, 2),
        "ours_fps_median": round(ours_r["mix"].median),
        "ocpp_lib_fps_median": round(lib_r["mix"].median),
        "stat": "best of rounds",
        "frames": len(workloads["mix"]),
        "frames_timed": {s.key: sum(x.timed for x in results[s.key].values()) for s in sides},
        "mix": {k.key: k.weight / 100 for k in MIX},
        "per_type": per_type,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "seed": args.seed,
        "async_validation": False if ASYNC_VALIDATION_WAS is not None else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": {
            d: dist_version(d)
            for d in ("ocpp", "jsonschema", "orjson", "fastjsonschema", "plugstream")
        },
    }
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
