wrk.method = "POST"
wrk.body = '{"text": "hello world", "n": 42}'
wrk.headers["Content-Type"] = "application/json"
