package cmd

// The in-process tests run the stock set, as cmd/jsplan does.
import (
	_ "github.com/jsplan/jsplan/drivers/all"
	_ "github.com/jsplan/jsplan/steps"
)
