package ledger

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// listeningSockets returns the inodes of this process's listening TCP sockets
// and bound UDP sockets, from /proc.
func listeningSockets(t *testing.T) map[string]string {
	t.Helper()
	own := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("no /proc (this test reads the process's sockets there, on Linux): %v", err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	out := map[string]string{}
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open("/proc/self/net/" + proto)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			local, state, inode := fields[1], fields[3], fields[9]
			listening := state == "0A" /* TCP_LISTEN */ || strings.HasPrefix(proto, "udp")
			if listening && own[inode] {
				out[inode] = proto + " " + local
			}
		}
		f.Close()
	}
	return out
}

// TestNoListeners: without WithHTTP the embedded chain opens no socket at all
// (no P2P, no discovery, no RPC); with it, exactly the HTTP listener.
func TestNoListeners(t *testing.T) {
	before := listeningSockets(t)
	newSockets := func() []string {
		var out []string
		for inode, desc := range listeningSockets(t) {
			if _, ok := before[inode]; !ok {
				out = append(out, desc)
			}
		}
		return out
	}
	e := openTest(t, t.TempDir())
	if s := newSockets(); len(s) != 0 {
		t.Fatalf("embedded chain listens on %v", s)
	}
	e.Close()
	e2 := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	if s := newSockets(); len(s) != 1 {
		t.Fatalf("with WithHTTP: listening on %v, want only %s", s, e2.HTTPEndpoint())
	}
}
