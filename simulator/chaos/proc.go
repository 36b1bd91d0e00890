package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the harness. Its stderr (and stdout, unless
// the caller takes it) goes to a log file under the run's log directory and
// to an in-memory copy that readiness checks look into.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *logBuf
	file *os.File
	done chan struct{} // closed when the process has exited and was reaped
	err  error         // Wait's result, set before done is closed
}

// startProc starts name as a child with args. stdout, if non-nil, receives
// the child's standard output instead of the log; stdin, if non-nil, is
// connected to the child's standard input.
func startProc(name, logPath string, env []string, stdin io.Reader, stdout io.Writer, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, log: &logBuf{}, file: f, done: make(chan struct{})}
	w := io.MultiWriter(f, p.log)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stderr = w
	p.cmd.Stdout = w
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	p.cmd.Stdin = stdin
	p.cmd.SysProcAttr = childAttr()
	fmt.Fprintf(f, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		fmt.Fprintf(f, "=== %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), p.err)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to grace for the exit, then kills it.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM: killed", p.name, grace)
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the process's output holds line.
func (p *proc) waitLog(ctx context.Context, line string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for !strings.Contains(p.log.String(), line) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before logging %q; log tail:\n%s", p.name, p.err, line, p.log.tail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s did not log %q within %s: %w", p.name, line, d, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// logBuf is a bytes.Buffer safe for a child's output and the harness.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Keep memory bounded on long soaks: the file has everything.
	if l.b.Len() > 4<<20 {
		rest := bytes.Clone(l.b.Bytes()[l.b.Len()-1<<20:])
		l.b.Reset()
		l.b.Write(rest)
	}
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// run runs a short faregate command to completion and returns its stdout.
func run(ctx context.Context, env []string, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = childAttr()
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, stderr.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}
