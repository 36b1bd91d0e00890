package clearing_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
)

// TestStoreCurrencyBound: a store keeps the currency of its first start's
// registry; a registry naming another is refused at start, naming both,
// and the store opens again with its own.
func TestStoreCurrencyBound(t *testing.T) {
	dir := t.TempDir()
	reg, _ := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
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
