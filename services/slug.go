package services

import (
	"strings"
	"unicode"
)

// maxSlug keeps a slug usable as a DNS label and a container name part.
const maxSlug = 63

// Slug derives the URL-safe service name from a display title: lower case,
// every run of characters outside [a-z0-9] becomes one '-', no leading or
// trailing '-', at most 63 bytes. Latin letters with accents are spelt
// without them (é → e, ß → ss, æ → ae); combining marks are dropped; other
// letters, such as Greek or CJK, count as separators. Slug("CDO Demo") is
// "cdo-demo". The result is empty when the title has nothing to keep.
func Slug(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range title {
		if b.Len() > maxSlug {
			break // the rest would be cut off anyway
		}
		// Combining marks are what NFD turns accents into; dropping them
		// makes "e\u0301" give the same slug as "é".
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		r = unicode.ToLower(r)
		var s string
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			s = string(r)
		default:
			s = latin[r]
		}
		if s == "" {
			dash = b.Len() > 0
			continue
		}
		if dash {
			b.WriteByte('-')
			dash = false
		}
		b.WriteString(s)
	}
	slug := b.String()
	if len(slug) > maxSlug {
		slug = slug[:maxSlug]
	}
	return strings.TrimRight(slug, "-")
}

// validSlug reports whether s is what Slug returns for some title.
func validSlug(s string) bool {
	if s == "" || len(s) > maxSlug || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// latin spells the lower-case letters of Latin-1 Supplement and Latin
// Extended-A in ASCII: enough for the European names services carry,
// without a transliteration dependency.
var latin = map[rune]string{
	'à': "a", 'á': "a", 'â': "a", 'ã': "a", 'ä': "a", 'å': "a", 'æ': "ae",
	'ç': "c", 'è': "e", 'é': "e", 'ê': "e", 'ë': "e",
	'ì': "i", 'í': "i", 'î': "i", 'ï': "i", 'ð': "d", 'ñ': "n",
	'ò': "o", 'ó': "o", 'ô': "o", 'õ': "o", 'ö': "o", 'ø': "o",
	'ù': "u", 'ú': "u", 'û': "u", 'ü': "u", 'ý': "y", 'þ': "th", 'ß': "ss", 'ÿ': "y",

	'ā': "a", 'ă': "a", 'ą': "a",
	'ć': "c", 'ĉ': "c", 'ċ': "c", 'č': "c",
	'ď': "d", 'đ': "d",
	'ē': "e", 'ĕ': "e", 'ė': "e", 'ę': "e", 'ě': "e",
	'ĝ': "g", 'ğ': "g", 'ġ': "g", 'ģ': "g",
	'ĥ': "h", 'ħ': "h",
	'ĩ': "i", 'ī': "i", 'ĭ': "i", 'į': "i", 'ı': "i", 'ĳ': "ij",
	'ĵ': "j", 'ķ': "k", 'ĸ': "k",
	'ĺ': "l", 'ļ': "l", 'ľ': "l", 'ŀ': "l", 'ł': "l",
	'ń': "n", 'ņ': "n", 'ň': "n", 'ŉ': "n", 'ŋ': "n",
	'ō': "o", 'ŏ': "o", 'ő': "o", 'œ': "oe",
	'ŕ': "r", 'ŗ': "r", 'ř': "r",
	'ś': "s", 'ŝ': "s", 'ş': "s", 'š': "s", 'ſ': "s",
	'ţ': "t", 'ť': "t", 'ŧ': "t",
	'ũ': "u", 'ū': "u", 'ŭ': "u", 'ů': "u", 'ű': "u", 'ų': "u",
	'ŵ': "w", 'ŷ': "y", 'ź': "z", 'ż': "z", 'ž': "z",
}
