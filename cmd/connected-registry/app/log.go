package app

import (
	"io"
	"log/slog"
	"strings"
)

// newLogger builds the one logger of a command: text lines on w at level (error, warn, info or debug).
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
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
