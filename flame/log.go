package flame

import (
	"log/slog"
)

// logger is Config.Logger, or slog.Default() (as it is at the time of
// logging) when that is nil.
func (p *Pool) logger() *slog.Logger {
	if p.cfg.Logger != nil {
		return p.cfg.Logger
	}
	return slog.Default()
}

func (p *Pool) logError(msg string, args ...any) {
	p.logger().Error(msg, append([]any{"pool", p.cfg.Name}, args...)...)
}

func (p *Pool) logDebug(msg string, args ...any) {
	p.logger().Debug(msg, append([]any{"pool", p.cfg.Name}, args...)...)
}
