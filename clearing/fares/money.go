package fares

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/faregate/faregate/fare"
)

// Money is an amount in the minor units of an ISO 4217 currency: 320 CAD is
// CAD 3.20, 500 JPY is JPY 500. Amounts are never floats.
type Money struct {
	Amount   int64  // minor units; may be negative (transfer discounts)
	Currency string // ISO 4217 alphabetic code, e.g. "EUR"
}

// String formats m as "3.20 CAD".
func (m Money) String() string {
	return FormatAmount(m.Amount, m.Currency) + " " + m.Currency
}

// CurrencyDigits reports the number of ISO 4217 minor-unit digits of an
// alphabetic currency code (2 for EUR, 0 for JPY, 3 for KWD) and whether the
// code is a known active currency. The table lives in package fare, shared
// with terminals and clearing.
func CurrencyDigits(code string) (int, bool) {
	d, err := fare.CurrencyDigits(code)
	return d, err == nil
}

// ErrUnknownCurrency is returned for a code that is not an active ISO 4217
// currency.
var ErrUnknownCurrency = errors.New("unknown ISO 4217 currency code")

// ParseAmount parses a decimal amount such as "3.20", "-1.5" or "500" into
// minor units of currency. More decimals than the currency has are accepted
// only when the extra digits are zeros ("3.200" CAD), never rounded.
func ParseAmount(s, currency string) (int64, error) {
	digits, ok := CurrencyDigits(currency)
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownCurrency, currency)
	}
	orig := ShortValue(s)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && (!hasDot || frac == "") {
		return 0, fmt.Errorf("invalid amount %q", orig)
	}
	if hasDot && frac == "" {
		return 0, fmt.Errorf("invalid amount %q", orig)
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid amount %q: want a decimal number such as 3.20", orig)
		}
	}
	if len(frac) > digits {
		if strings.Trim(frac[digits:], "0") != "" {
			return 0, fmt.Errorf("invalid amount %q: %s has %d decimal places", orig, currency, digits)
		}
		frac = frac[:digits]
	}
	frac += strings.Repeat("0", digits-len(frac))
	if intPart == "" {
		intPart = "0"
	}
	v, err := strconv.ParseInt(intPart+frac, 10, 64)
	if err != nil || v > int64(fare.MaxAmount) {
		return 0, fmt.Errorf("invalid amount %q: out of range (at most %s %s)", orig, fare.MaxAmount.Format(currency), currency)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// FormatAmount formats minor units of currency as a decimal string with the
// currency's ISO 4217 number of decimals: FormatAmount(320, "CAD") is "3.20".
// An unknown currency is formatted with two decimals.
func FormatAmount(amount int64, currency string) string {
	digits, ok := CurrencyDigits(currency)
	if !ok {
		digits = 2
	}
	return fare.FormatMinor(amount, digits)
}

// ShortValue is a feed's field value cut for an error message: a refusal
// names what was wrong without echoing a megabyte-long value back (an
// outside test got a 52 MB answer to a 67 kB feed); %q of it shows the
// cut.
func ShortValue(s string) string {
	// Over 256 bytes is no id, amount or time of a real feed; a message's
	// explanatory parts stay under it.
	if len(s) <= 256 {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", runePrefix(s, 128), len(s))
}

// ShortMessage cuts a whole error message to a few kilobytes, for values
// a message holds inside other errors.
func ShortMessage(msg string) string {
	if len(msg) <= 2048 {
		return msg
	}
	return fmt.Sprintf("%s... (message of %d bytes cut)", runePrefix(msg, 2048), len(msg))
}

// runePrefix is at most the first n bytes of s (n < len(s)), not cutting a
// character in two.
func runePrefix(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ShortArgs applies ShortValue to the string arguments of a message.
func ShortArgs(args []any) []any {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = ShortValue(s)
		}
	}
	return args
}
