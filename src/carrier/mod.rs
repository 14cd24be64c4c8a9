//! Carrier wire formats ⇄ carrier-neutral call events and commands.
