//! The sans-IO call core and its tokio driver.
