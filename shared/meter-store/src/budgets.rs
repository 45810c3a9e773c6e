//! Budgets stored in the usage table (issue 5): placeholder, being written.
