package fare

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestRedactURL: what a node's, a NATS server's or an API's URL may
// print: no password, token, key in the path or query; paths and host:port
// as they are.
func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"http://user:s3cret@127.0.0.1:1": "http://user:xxxxx@127.0.0.1:1",
		"https://node.example/v1":        "https://node.example/v1",
		"/var/run/geth.ipc":              "/var/run/geth.ipc",
		"ws://token@node:8546":           "ws://xxxxx@node:8546",
		"nats://[::1]:4222":              "nats://[::1]:4222",
		// Keys in the path and query, as hosted nodes take them.
		"https://mainnet.example/v3/0123456789abcdef0123":        "https://mainnet.example/v3/xxxxx",
		"https://node.example/rpc?apikey=K3Y&chain=1":            "https://node.example/rpc?apikey=xxxxx&chain=xxxxx",
		"https://rpc.example/?SECRETTOKEN123":                    "https://rpc.example/?xxxxx",
		"https://node.example/rpc?chains=1,2&apikey=SECRETKEY":   "https://node.example/rpc?chains=xxxxx&apikey=xxxxx",
		"http://user:pa,ssword@host:8545":                        "http://user:xxxxx@host:8545",
		"https://0123456789abcdef0123:S3cret@node/v3/0123456789": "https://0123456789abcdef0123:xxxxx@node/v3/0123456789",
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
		// Passwords and tokens holding '/', '?', '#', a '//' start, an '@'
		// in a query (a static review: each printed some of a secret).
		"https://u:s3cr%t@node:8545":                    "https://xxxxx@node:8545",
		"https://u:s3/cret@node:8545":                   "https://xxxxx@node:8545",
		"https://u:s3#cret@node:99999":                  "https://xxxxx@node:99999",
		"nats://tokenABCDEFG/hijk@h:4222":               "nats://xxxxx@h:4222",
		"https://user:1234/S3cret@node:8545":            "https://xxxxx@node:8545",
		"https://user:99?S3cret@node:8545":              "https://xxxxx@node:8545",
		"//user:S3cretPW@host:4222":                     "xxxxx@host:4222",
		"localhost:8545/?user=me@corp&apikey=SECRETKEY": "xxxxx@xxxxx",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
	// NATS servers, a list.
	for raw, want := range map[string]string{
		"nats://u:pw@a:4222,nats://tok3n@b:4222,nats://c:4222": "nats://u:xxxxx@a:4222,nats://xxxxx@b:4222,nats://c:4222",
		"nats://h:4222,clr:S3cretPW@h:0":                       "nats://h:4222,xxxxx@h:0",
	} {
		if got := RedactURLList(raw); got != want {
			t.Errorf("RedactURLList(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestRedactError: an error quoting a URL (as an HTTP client's does), one
// that does not parse, or has no scheme, names none of its secrets, in any
// form an error quotes them (escaped, cut at a '#'); errors.Is still sees
// the cause; a user name beside a password, and a short token's spelling
// elsewhere in the message, are kept.
func TestRedactError(t *testing.T) {
	for _, raw := range []string{
		"clr:S3cretPW@127.0.0.1:25321",
		"http://127.0.0.1:25303/v3/PATHKEYabcdef0123%zz",
		"http://alice:PWs3cret77@127.0.0.1:1/v3/PATHKEYabcdef0123?apikey=QUERYKEY",
		"TOKENs3cretXYZ@[::1:4222",
		"mainnet.example.io/v3/0123456789abcdefPATHKEY?apikey=QUERYKEY",
		"nats://clr:S3cretPW#x@host:4222",
		`nats://user:pa"sS3cretPW@host:4222`,
		"https://node.example/rpc?chains=1,2&apikey=QUERYKEY",
	} {
		cause := errors.New("boom")
		_, perr := url.Parse(raw)
		err := RedactError(fmt.Errorf("dial %s (parse %q: %v): %w", raw, "nats://"+raw, perr, cause), raw)
		for _, secret := range []string{"S3cretPW", "PATHKEY", "PWs3cret77", "QUERYKEY", "TOKENs3cretXYZ"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: %q names %s", raw, err, secret)
			}
		}
		if !errors.Is(err, cause) {
			t.Errorf("%s: the cause is lost", raw)
		}
	}
	err := RedactError(errors.New(`connect to nats://nats@host:4222: nats: no servers available; dial http://alice:s3cretpw@h`), "nats://nats@host:4222", "http://alice:s3cretpw@h")
	if want := "connect to nats://xxxxx@host:4222: nats: no servers available; dial http://alice:xxxxx@h"; err.Error() != want {
		t.Errorf("%q, want %q", err, want)
	}
}
