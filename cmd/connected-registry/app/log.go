package app

import (
	"io"
	"log/slog"
	"strings"
)

// errKey is the key of a log line's error, in every package.
const errKey = "err"

// newLogger builds the one logger of a command: text lines on w at level (error, warn, info or debug). A line's
// error is always under errKey: the logger renames an "error" attribute, which a package may still write (the
// parent gate's does), so that one query finds every error.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "error":
		l = slog.LevelError
	case "warn", "warning":
		l = slog.LevelWarn
	case "info", "":
		l = slog.LevelInfo
	case "debug":
		l = slog.LevelDebug
	default:
		return nil, usageErrorf("--log-level %q is not error, warn, info or debug", level)
	}
	if w == nil {
		w = io.Discard
	}
	rename := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "error" {
			a.Key = errKey
		}
		return a
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: rename})), nil
}
