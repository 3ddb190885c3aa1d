//! Whole commands over the LVM fake and an in-process agent.
