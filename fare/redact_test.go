package fare

import "testing"

// TestRedactURL: what a node's or NATS servers' URL may print: no
// password, token, key in the path or query value, each of a list alike.
func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"http://user:s3cret@127.0.0.1:1": "http://user:xxxxx@127.0.0.1:1",
		"https://node.example/v1":        "https://node.example/v1",
		"/var/run/geth.ipc":              "/var/run/geth.ipc",
		"ws://token@node:8546":           "ws://xxxxx@node:8546",
		// Keys in the path and query, as hosted nodes take them.
		"https://mainnet.example/v3/0123456789abcdef0123": "https://mainnet.example/v3/xxxxx",
		"https://node.example/rpc?apikey=K3Y&chain=1":     "https://node.example/rpc?apikey=xxxxx&chain=xxxxx",
		// NATS servers, a list.
		"nats://u:pw@a:4222,nats://tok3n@b:4222,nats://c:4222": "nats://u:xxxxx@a:4222,nats://xxxxx@b:4222,nats://c:4222",
		// Unparsable: a bad escape, a '/' in the password.
		"https://u:s3cr%t@node:8545":   "https://xxxxx@node:8545",
		"https://u:s3/cret@node:8545":  "https://xxxxx@node:8545",
		"https://u:s3#cret@node:99999": "https://xxxxx@node:99999",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
