"""Tables and plots built from run folders only."""
