package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strconv"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
)

// serviceName is the service's name: its consumer group, its event source,
// its database role prefix and its default OTEL service name.
const serviceName = events.SourceEmail

// config is everything the email service reads from its environment.
type config struct {
	Platform platform.Config
	// SMTPAddr (SMTP_ADDR, host:port) is the mail server; empty means emails
	// are recorded as sent without being delivered anywhere.
	SMTPAddr string
	// SMTPFrom (SMTP_FROM) is the sender, default orders@sagashop.invalid.
	SMTPFrom fromAddress
}

// fromAddress is the sender: the bare address for the SMTP envelope and the
// header form (which may carry a display name).
type fromAddress struct {
	Address string
	Header  string
}

const defaultFrom = "orders@sagashop.invalid"

func loadConfig(getenv func(string) string) (config, error) {
	var problems []error
	pc, err := platform.ParseConfig(getenv, serviceName, ":8085")
	if err != nil {
		problems = append(problems, err)
	}
	c := config{Platform: pc, SMTPAddr: getenv("SMTP_ADDR")}
	if c.SMTPAddr != "" {
		host, port, err := net.SplitHostPort(c.SMTPAddr)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			problems = append(problems, fmt.Errorf("SMTP_ADDR %q: want host:port", c.SMTPAddr))
		}
	}
	from := getenv("SMTP_FROM")
	if from == "" {
		from = defaultFrom
	}
	if a, err := mail.ParseAddress(from); err != nil || CheckAddress(a.Address) != nil {
		problems = append(problems, fmt.Errorf("SMTP_FROM %q: want an address like %s or \"Shop <%s>\"", from, defaultFrom, defaultFrom))
	} else {
		c.SMTPFrom = fromAddress{Address: a.Address, Header: a.String()}
	}
	if err := errors.Join(problems...); err != nil {
		return config{}, fmt.Errorf("email config: %w", err)
	}
	return c, nil
}

// LogValue shows the service's own settings (none of them secret).
func (c config) LogValue() slog.Value {
	smtpAddr := c.SMTPAddr
	if smtpAddr == "" {
		smtpAddr = "(none: emails are recorded, not delivered)"
	}
	return slog.GroupValue(slog.String("smtp_addr", smtpAddr), slog.String("smtp_from", c.SMTPFrom.Header))
}
