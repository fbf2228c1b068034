"""Interop checks of issue 10 with Python grpcio (gRPC C-core) against two `weft run` nodes.

Node a serves namespace alpha (tests/interop/apps/a), node b serves beta (apps/b). Prints one
line per check, `ok <what>` or `FAIL <what>: <detail>`, then `N passed, N failed`; exits 1 on a
failure. Usage: check.py <weft binary> (run through run.sh, which makes the stubs).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import any_pb2, json_format, struct_pb2

import common_pb2
import dispatcher_pb2 as pb
import dispatcher_pb2_grpc as pb_grpc
import health_pb2
import health_pb2_grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WEFT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/weft")
SECRET = "interop-secret"
# The engine's per-attempt timeout is 2 s; a dead peer must cost at most about that.
ATTEMPT_BOUND = 6.0

passed, failed = 0, 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok {what}", flush=True)
    else:
        failed += 1
        print(f"FAIL {what}: {detail}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(name, app, port, join=None):
    log = tempfile.NamedTemporaryFile(prefix=f"weft-interop-{name}-", suffix=".log", delete=False)
    args = [WEFT, "run", "-C", os.path.join(ROOT, "tests/interop/apps", app),
            "--node", name, "--listen", f"127.0.0.1:{port}", "--cluster-secret", SECRET]
    if join:
        args += ["--join", join]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    p.log_path = log.name
    return p


def value_any(v):
    a = any_pb2.Any()
    a.Pack(json_format.ParseDict(v, struct_pb2.Value()))
    return a


def decode(any_msg):
    if any_msg is None or not any_msg.type_url:
        return None
    v = struct_pb2.Value()
    if not any_msg.Unpack(v):
        return ("not a Value", any_msg.type_url)
    return json_format.MessageToDict(v)


def request(ns, method, arg, target="", service=None):
    return pb.DispatchRequest(
        namespace=ns,
        service=common_pb2.ServiceTypeRef(service_name=service or ns),
        method_name=method,
        input=value_any(arg),
        target_collector_id=target,
    )


def wait_serving(stub, what, within=30.0):
    end = time.time() + within
    last = None
    while time.time() < end:
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return True, r.status
            last = r.status
        except grpc.RpcError as e:
            last = e.code()
        time.sleep(0.1)
    return False, last


def main():
    pa, pb_port = free_port(), free_port()
    a = start("a", "a", pa)
    b = start("b", "b", pb_port, join=f"127.0.0.1:{pa}")
    procs = [a, b]
    try:
        ch_a = grpc.insecure_channel(f"127.0.0.1:{pa}")
        ch_b = grpc.insecure_channel(f"127.0.0.1:{pb_port}")
        disp_a = pb_grpc.CollectiveDispatcherStub(ch_a)
        health_a = health_pb2_grpc.HealthStub(ch_a)
        health_b = health_pb2_grpc.HealthStub(ch_b)

        ok_a, st_a = wait_serving(health_a, "a")
        ok_b, st_b = wait_serving(health_b, "b")
        check("health Check: node a SERVING", ok_a, f"last status {st_a}")
        check("health Check: node b SERVING", ok_b, f"last status {st_b}")
        r = health_a.Check(health_pb2.HealthCheckRequest(service="collector.CollectiveDispatcher"), timeout=2)
        check("health Check of collector.CollectiveDispatcher on a: SERVING",
              r.status == health_pb2.HealthCheckResponse.SERVING, str(r))

        # The cluster forms on its own (no Connect): wait until a routes beta to b.
        end = time.time() + 30
        r = None
        while time.time() < end:
            r = disp_a.Dispatch(request("beta", "double", 21), timeout=5)
            if r.status.code == 200:
                break
            time.sleep(0.2)
        check("Dispatch on a for beta (only b serves it): 200 from b",
              r is not None and r.status.code == 200 and r.handled_by_collector_id == "b",
              f"{r}")
        out = decode(r.output) if r is not None else None
        check("  ... its output is b's result {node: b, value: 42}",
              out == {"node": "b", "value": 42}, f"{out}")

        r = disp_a.Dispatch(request("beta", "double", 4, target="b"), timeout=5)
        check("Dispatch on a with target_collector_id=b: 200, handled_by b",
              r.status.code == 200 and r.handled_by_collector_id == "b" and decode(r.output) == {"node": "b", "value": 8},
              f"{r}")
        r = disp_a.Dispatch(request("alpha", "echo", "hi", target="a"), timeout=5)
        check("Dispatch on a with target_collector_id=a (itself): 200, handled_by a",
              r.status.code == 200 and r.handled_by_collector_id == "a" and decode(r.output) == {"node": "a", "got": "hi"},
              f"{r}")
        r = disp_a.Dispatch(request("gamma", "nope", 1), timeout=5)
        check("Dispatch on a for a namespace nobody serves: 404 no collector found",
              r.status.code == 404 and "no collector found for namespace 'gamma'" in r.status.message, f"{r}")
        r = disp_a.Dispatch(pb.DispatchRequest(namespace="alpha", method_name="echo"), timeout=5)
        check("Dispatch without a service: 400 service is required",
              r.status.code == 400 and r.status.message == "service is required", f"{r}")

        r = disp_a.Dispatch(request("alpha", "relay", 5), timeout=10)
        out = decode(r.output)
        check("a function on a calling funcs.call into b's namespace: 200, b's result",
              r.status.code == 200 and r.handled_by_collector_id == "a"
              and out == {"via": "a", "result": {"node": "b", "value": 10}}, f"{r} {out}")

        # 2,000 concurrent calls, half local on a, half routed to b.
        t0 = time.time()
        futs = []
        for i in range(2000):
            if i % 2 == 0:
                futs.append((i, disp_a.Dispatch.future(request("alpha", "echo", i), timeout=60)))
            else:
                futs.append((i, disp_a.Dispatch.future(request("beta", "double", i), timeout=60)))
        bad = []
        for i, f in futs:
            try:
                r = f.result()
                want = {"node": "a", "got": i} if i % 2 == 0 else {"node": "b", "value": 2 * i}
                if r.status.code != 200 or decode(r.output) != want:
                    bad.append((i, r.status.code, r.status.message))
            except grpc.RpcError as e:
                bad.append((i, e.code(), e.details()))
        check(f"2,000 concurrent Dispatch calls (1,000 local, 1,000 to b) all answered right "
              f"in {time.time() - t0:.1f} s", not bad, f"{len(bad)} wrong, first {bad[:3]}")

        # b killed: a answers beta with an error within the attempt timeout, and serves alpha.
        b.send_signal(signal.SIGKILL)
        b.wait(timeout=10)
        t0 = time.time()
        r = disp_a.Dispatch(request("beta", "double", 1), timeout=30)
        took = time.time() - t0
        check(f"b killed: Dispatch for beta on a fails ({r.status.code}) within the attempt timeout "
              f"({took:.2f} s)", r.status.code != 200 and took < ATTEMPT_BOUND, f"{r} after {took:.2f} s")
        r = disp_a.Dispatch(request("alpha", "echo", "still"), timeout=5)
        check("b killed: a still serves its own namespace",
              r.status.code == 200 and r.handled_by_collector_id == "a", f"{r}")
        r = health_a.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        check("b killed: a's health is still SERVING", r.status == health_pb2.HealthCheckResponse.SERVING, str(r))

        # Stopping a: its health goes NOT_SERVING (Watch sees it) before the port closes.
        watch = health_a.Watch(health_pb2.HealthCheckRequest(service=""), timeout=15)
        first = next(watch)
        a.send_signal(signal.SIGINT)
        seen = [first.status]
        try:
            for m in watch:
                seen.append(m.status)
                if m.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
        except grpc.RpcError:
            pass
        check("SIGINT to a: Watch goes SERVING -> NOT_SERVING",
              seen[:1] == [health_pb2.HealthCheckResponse.SERVING]
              and health_pb2.HealthCheckResponse.NOT_SERVING in seen, f"{seen}")
        a.wait(timeout=15)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if failed:
            for p in procs:
                print(f"--- log of node {p.args[p.args.index('--node') + 1]} ({p.log_path}):")
                with open(p.log_path) as f:
                    print(f.read()[-4000:])
        for p in procs:
            os.unlink(p.log_path)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
