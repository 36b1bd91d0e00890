package fare

import (
	"fmt"
	"strconv"
	"strings"
)

// Amount is an amount of money in a currency's minor units (cents, kopecks).
// Money is never a float anywhere in Faregate.
type Amount int64

// currencyDigits gives ISO 4217 minor-unit digits for the currencies
// Faregate's cities use; unknown codes are rejected rather than guessed.
var currencyDigits = map[string]int{
	"EUR": 2, "USD": 2, "GBP": 2, "RUB": 2, "CNY": 2, "CAD": 2, "AUD": 2,
	"CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "HKD": 2,
	"SGD": 2, "TWD": 2, "INR": 2, "BRL": 2, "MXN": 2, "NZD": 2,
	"KRW": 0, "JPY": 0, "CLP": 0, "VND": 0, "ISK": 0,
	"BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}

// CurrencyDigits returns the number of minor-unit digits of an ISO 4217 code.
func CurrencyDigits(code string) (int, error) {
	d, ok := currencyDigits[code]
	if !ok {
		return 0, fmt.Errorf("currency %q: not a supported ISO 4217 code", code)
	}
	return d, nil
}

// Format renders a in major units with the currency's digits: 570 RUB is
// "5.70", 1250 KRW is "1250".
func (a Amount) Format(currency string) string {
	d, err := CurrencyDigits(currency)
	if err != nil {
		return strconv.FormatInt(int64(a), 10)
	}
	return formatMinor(int64(a), d)
}

func formatMinor(v int64, digits int) string {
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		if len(s) <= digits {
			s = strings.Repeat("0", digits-len(s)+1) + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseAmount parses a decimal in major units ("5.70") into minor units for
// the currency, rejecting more fractional digits than the currency has.
func ParseAmount(s, currency string) (Amount, error) {
	d, err := CurrencyDigits(currency)
	if err != nil {
		return 0, err
	}
	orig := s
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") {
		return 0, fmt.Errorf("amount %q: not a decimal number", orig)
	}
	if len(frac) > d {
		return 0, fmt.Errorf("amount %q: %s has %d minor digits, got %d", orig, currency, d, len(frac))
	}
	frac += strings.Repeat("0", d-len(frac))
	digits := whole + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("amount %q: not a decimal number", orig)
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q: %w", orig, err)
	}
	if neg {
		v = -v
	}
	return Amount(v), nil
}
