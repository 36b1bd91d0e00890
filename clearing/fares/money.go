package fares

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// currencyDigits lists the ISO 4217 minor-unit digits of the active codes
// that do not use two digits; every other code in iso4217 uses two.
var currencyDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0,
	"KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0,
	"XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// iso4217 is the set of active ISO 4217 alphabetic codes with a minor unit
// (funds codes and precious metals without one are left out).
var iso4217 = func() map[string]bool {
	const codes = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD " +
		"CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS " +
		"GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK " +
		"LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB " +
		"PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB " +
		"TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL"
	m := make(map[string]bool)
	for _, c := range strings.Fields(codes) {
		m[c] = true
	}
	return m
}()

// CurrencyDigits reports the number of ISO 4217 minor-unit digits of an
// alphabetic currency code (2 for EUR, 0 for JPY, 3 for KWD) and whether the
// code is a known active currency.
func CurrencyDigits(code string) (int, bool) {
	if !iso4217[code] {
		return 0, false
	}
	if d, ok := currencyDigits[code]; ok {
		return d, true
	}
	return 2, true
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
	orig := s
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
	if err != nil || len(intPart) > 15 {
		return 0, fmt.Errorf("invalid amount %q: out of range", orig)
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
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = uint64(-amount)
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
