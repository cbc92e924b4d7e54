# Load for run.sh: N open-account commands on new streams over C keep-alive connections.
import http.client, json, sys, threading, uuid
port, n, c, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
per = n // c
fails = []
def worker(w):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for i in range(per):
        body = json.dumps({"aggregate_id": f"{tag}-{w}-{i}", "payload": {"owner": "alice"}})
        conn.request("POST", "/commands/open-account", body, {"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status >= 300: fails.append(r.status)
ts = [threading.Thread(target=worker, args=(w,)) for w in range(c)]
[t.start() for t in ts]; [t.join() for t in ts]
print("sent", per * c, "failures", len(fails), fails[:3])
