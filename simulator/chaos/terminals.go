package chaos

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// term is one `faregate terminal --source stdin` process and what the
// harness knows of it. The harness feeds it tap lines at a rate and reads
// the sequence of each tap it took from its standard output.
type term struct {
	h                  *harness
	id, operator, stop string
	key, data          string
	proxies            []*proxy
	seq                atomic.Uint64 // highest sequence it printed
	// printed maps each sequence it printed (anchored, not provisional:
	// a provisional one may be signed again under another) to the event
	// id printed with it, under printedMu: the checks at the end find a
	// tap replaced by another under its sequence, which counting
	// sequences cannot.
	printedMu   sync.Mutex
	printed     map[uint64]string
	restarts    int
	inputClosed bool
	mu          sync.Mutex // guards p, stdin, inputClosed, restarts
	p           *proc
	stdin       io.WriteCloser
	readers     sync.WaitGroup // stdout readers of every process started
}

// seqRE reads a tap line the terminal prints: its event id, sequence and
// whether that is provisional.
var seqRE = regexp.MustCompile(`^([0-9a-f]{32}) seq=(\d+)(\(provisional\))? `)

// start starts the terminal process on its data dir, connected to NATS
// through its proxies.
func (t *term) start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var urls []string
	for _, px := range t.proxies {
		urls = append(urls, "nats://"+px.addr())
	}
	// OS pipes, so that no copying goroutine outlives a killed process: a
	// write after its death fails (EPIPE) and its stdout ends with it.
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	p, err := startProc(t.id, filepath.Join(t.h.logs, t.id+".log"), t.h.cfg.Env, inR, outW, t.h.cfg.Faregate,
		"terminal", "--id", t.id, "--operator", t.operator, "--stop", t.stop, "--key", t.key, "--data", t.data,
		"--nats", strings.Join(urls, ","), "--clearing-key", t.h.confirmKey, "--source", "stdin")
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return err
	}
	t.p, t.stdin = p, inW
	t.readers.Add(1)
	go func() { // owned by the process: ends when its stdout closes
		defer t.readers.Done()
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if m := seqRE.FindStringSubmatch(sc.Text()); m != nil {
				if n, err := strconv.ParseUint(m[2], 10, 64); err == nil {
					for {
						cur := t.seq.Load()
						if n <= cur || t.seq.CompareAndSwap(cur, n) {
							break
						}
					}
					if m[3] == "" {
						t.printedMu.Lock()
						if t.printed == nil {
							t.printed = make(map[uint64]string)
						}
						t.printed[n] = m[1]
						t.printedMu.Unlock()
					}
				}
			}
		}
		io.Copy(io.Discard, outR)
	}()
	go func() { // the write end is the harness's: closed once the process is gone
		<-p.done
		t.mu.Lock()
		if t.stdin == inW {
			t.stdin = nil
		}
		t.mu.Unlock()
		inW.Close()
	}()
	return nil
}

func (t *term) current() *proc {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// kill SIGKILLs the process; restart starts it again on the same data.
func (t *term) kill() {
	t.mu.Lock()
	p := t.p
	t.stdin = nil
	t.mu.Unlock()
	p.kill()
}

func (t *term) restart() error {
	t.mu.Lock()
	t.restarts++
	t.mu.Unlock()
	return t.start()
}

// closeInput ends the tap lines: the terminal then drains its outbox and
// exits.
func (t *term) closeInput() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inputClosed = true
	if t.stdin != nil {
		t.stdin.Close()
		t.stdin = nil
	}
}

// feed writes tap lines at rate per second until the harness stops
// feeding; a line written while the process is down or dying is not a tap
// (only what the terminal numbered is).
func (t *term) feed(rate float64) {
	defer t.h.feeders.Done()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	r := rand.New(rand.NewPCG(rand.Uint64(), 0))
	for {
		select {
		case <-t.h.stopFeeding:
			return
		case <-tick.C:
		}
		t.mu.Lock()
		w := t.stdin
		t.mu.Unlock()
		if w == nil {
			continue
		}
		line := fmt.Sprintf("entry card chaos-%s-%06d adult\n", t.id, r.IntN(20000))
		w.Write([]byte(line)) // an error: the process was killed; it restarts
	}
}
