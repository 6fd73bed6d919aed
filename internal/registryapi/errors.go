package registryapi

import (
	"encoding/json"
	"strings"
)

// ErrorMessage is the first error of an error answer of the distribution API (`{"errors":[{"code":…,
// "message":…}]}`) as "CODE message" on one line, or "" when body is no such answer.
func ErrorMessage(body []byte) string {
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return strings.Join(strings.Fields(e.Errors[0].Code+" "+e.Errors[0].Message), " ")
}
