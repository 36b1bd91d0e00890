package fare

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

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
		// No scheme (NATS takes user:pw@host:port), a bad escape in the
		// path or the password (an outside re-check found them printed).
		"clr:S3cretPW@127.0.0.1:25321":                                 "xxxxx@127.0.0.1:25321",
		"TOKENs3cretXYZ@[::1:4222":                                     "xxxxx@[::1:4222",
		"127.0.0.1:4222":                                               "127.0.0.1:4222",
		"http://127.0.0.1:25303/v3/PATHKEYabcdef0123%zz":               "http://127.0.0.1:25303/v3/xxxxx",
		"http://alice:PW%zzsecret77@127.0.0.1:99999/v3/PATHKEYabcdef0": "http://xxxxx@127.0.0.1:99999/v3/xxxxx",
		// A node written without its scheme, a key in its path or query
		// (an outside re-check); paths, with an '@' too, as they are.
		"mainnet.example.io/v3/0123456789abcdefSECRETKEY": "mainnet.example.io/v3/xxxxx",
		"localhost:8545/?apikey=K3Ysecret":                "localhost:8545/?xxxxx",
		"/tmp/bob@corp/geth.ipc":                          "/tmp/bob@corp/geth.ipc",
		"./data/chain/geth.ipc":                           "./data/chain/geth.ipc",
		"nats://h:4222,clr:S3cretPW@h:0":                  "nats://h:4222,xxxxx@h:0",
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

// TestRedactError: an error quoting a URL that does not parse, or has no
// scheme, names none of its secrets; errors.Is still sees the cause.
func TestRedactError(t *testing.T) {
	for _, raw := range []string{
		"clr:S3cretPW@127.0.0.1:25321",
		"http://127.0.0.1:25303/v3/PATHKEYabcdef0123%zz",
		"http://alice:PWs3cret77@127.0.0.1:1/v3/PATHKEYabcdef0123?apikey=QUERYKEY",
		"nats://h:4222,TOKENs3cretXYZ@[::1:4222",
		"mainnet.example.io/v3/0123456789abcdefPATHKEY?apikey=QUERYKEY",
	} {
		cause := errors.New("boom")
		err := RedactError(fmt.Errorf("dial %s (parse %q): %w", raw, "nats://"+raw, cause), raw)
		for _, secret := range []string{"S3cretPW", "PATHKEY", "PWs3cret77", "QUERYKEY", "TOKENs3cretXYZ"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: %q names %s", raw, err, secret)
			}
		}
		if !errors.Is(err, cause) {
			t.Errorf("%s: the cause is lost", raw)
		}
	}
}
