package clearing

import (
	"strings"
	"testing"
)

// TestIntParam: a query integer is refused naming what came, and a "+"
// that the query string decoded as a space is said to be one.
func TestIntParam(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"", 100, ""},
		{"7", 7, ""},
		{"1000", 1000, ""},
		{"0", 0, "0 is outside [1, 1000]"},
		{"1001", 0, "1001 is outside [1, 1000]"},
		{"1.5", 0, `"1.5" is not an integer`},
		{"x", 0, `"x" is not an integer`},
		{" 1", 0, `" 1" is not an integer (a + in a query string is a space: write %2B`},
		{"99999999999999999999", 0, "out of range"},
	}
	for _, tc := range tests {
		got, err := intParam(tc.in, 100, 1, 1000)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("intParam(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("intParam(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.wantErr)
		}
	}
}

// TestPaymentsStatus: a rider view says why it lists no payment, and that
// the payments it lists were taken before when clearing bills nobody now.
func TestPaymentsStatus(t *testing.T) {
	for _, c := range []struct {
		wired, acquirer bool
		payments        int
		want            string
	}{
		{false, false, 0, paymentsPending},
		{true, true, 0, ""},
		{true, true, 3, ""},
		{true, false, 0, noAcquirer},
		{true, false, 2, noAcquirerNow},
	} {
		if got := paymentsStatus(c.wired, c.acquirer, c.payments); got != c.want {
			t.Errorf("paymentsStatus(%v, %v, %d) = %q, want %q", c.wired, c.acquirer, c.payments, got, c.want)
		}
	}
}
