package clearing_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
)

// TestStoreCurrencyBound: a store keeps the currency of its first
// successful start's registry; a registry naming another is refused at start, naming both,
// and the store opens again with its own.
func TestStoreCurrencyBound(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	// A first start that fails (its NATS port taken) binds nothing, even
	// with a registry in another currency.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	jpy := *reg
	jpy.Currency = "JPY"
	if c, err := clearing.Open(context.Background(), clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: &jpy, Ledger: led, Period: time.Hour,
		NATSPort: taken.Addr().(*net.TCPAddr).Port, Logger: quietLogger(), ConfirmKey: testConfirmKey, NATSSeedFile: clearingSeedFile(t)}); err == nil {
		c.Close()
		t.Fatal("a start on a taken port succeeded: nothing to test")
	}
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour}
	startClearing(t, cfg).stop(t)
	for _, tc := range []struct {
		currency string
		want     string
	}{
		{"JPY", "the store's amounts are in EUR (its registry's at its first start), the registry says JPY"},
		{"EUR", ""},
	} {
		r := *reg
		r.Currency = tc.currency
		cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: &r, Ledger: led, Period: time.Hour,
			NATSPort: -1, Logger: quietLogger(), ConfirmKey: testConfirmKey, NATSSeedFile: clearingSeedFile(t)}
		c, err := clearing.Open(context.Background(), cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.currency, err)
		case tc.want != "" && (!errors.Is(err, clearing.ErrCurrencyMismatch) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrCurrencyMismatch saying %q", tc.currency, err, tc.want)
		}
		if c != nil {
			c.Close()
		}
	}
}
