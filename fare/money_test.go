package fare

import "testing"

func TestAmountFormatParse(t *testing.T) {
	tests := []struct {
		s        string
		currency string
		minor    Amount
	}{
		{"5.70", "RUB", 570},
		{"0.05", "EUR", 5},
		{"-1.20", "EUR", -120},
		{"1250", "KRW", 1250},
		{"1.250", "KWD", 1250},
		{"10000000000.00", "EUR", MaxAmount},
		{"-10000000000.00", "EUR", -MaxAmount},
	}
	for _, tt := range tests {
		got, err := ParseAmount(tt.s, tt.currency)
		if err != nil || got != tt.minor {
			t.Errorf("ParseAmount(%q, %s) = %d, %v; want %d", tt.s, tt.currency, got, err, tt.minor)
		}
		if f := tt.minor.Format(tt.currency); f != tt.s {
			t.Errorf("Format(%d, %s) = %q; want %q", tt.minor, tt.currency, f, tt.s)
		}
	}
	for _, bad := range []struct{ s, c string }{{"1.234", "EUR"}, {"1.5", "KRW"}, {"abc", "EUR"}, {"1.", "EUR"}, {"", "EUR"}, {"1", "XXX"}, {"99999999999999999999", "EUR"},
		{"10000000000.01", "EUR"}, {"-10000000000.01", "EUR"}, {"1000000000001", "KRW"}} {
		if _, err := ParseAmount(bad.s, bad.c); err == nil {
			t.Errorf("ParseAmount(%q, %s) accepted", bad.s, bad.c)
		}
	}
}

func FuzzParseAmount(f *testing.F) {
	f.Add("5.70", "EUR")
	f.Add("-0.01", "RUB")
	f.Fuzz(func(t *testing.T, s, c string) {
		a, err := ParseAmount(s, c)
		if err != nil {
			return
		}
		b, err := ParseAmount(a.Format(c), c)
		if err != nil || a != b {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, a, a.Format(c), b, err)
		}
	})
}

func TestAmountAdd(t *testing.T) {
	for _, tc := range []struct {
		a, b Amount
		ok   bool
	}{
		{MaxAmount, MaxAmount, true},
		{-5, 3, true},
		{1<<63 - 1, 1, false},
		{-1 << 63, -1, false},
		{1<<63 - 1, -1, true},
	} {
		if s, ok := tc.a.Add(tc.b); ok != tc.ok || (ok && s != tc.a+tc.b) {
			t.Errorf("%d.Add(%d) = %d, %v; want ok %v", tc.a, tc.b, s, ok, tc.ok)
		}
	}
}
