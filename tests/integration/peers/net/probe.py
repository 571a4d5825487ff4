"""probe.py HOST TIMEOUT PORT...: tries a TCP connection to each port and
prints one JSON object {port: result}, result being "open <banner>",
"reset" (refused: a TCP reset came back), "timeout" (no answer: dropped)
or "error <text>" (e.g. an ICMP unreachable)."""
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def probe(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return "open " + s.recv(200).decode(errors="replace").strip()
    except ConnectionRefusedError:
        return "reset"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as e:
        return f"error {e}"


def main():
    host, timeout = sys.argv[1], float(sys.argv[2])
    ports = sys.argv[3:]
    with ThreadPoolExecutor(len(ports)) as ex:   # in parallel: drops cost one timeout
        results = list(ex.map(lambda p: probe(host, int(p), timeout), ports))
    print(json.dumps(dict(zip(ports, results))))


if __name__ == "__main__":
    main()
