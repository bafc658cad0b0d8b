"""postveil-portal: messages for portal recipients, kept encrypted until picked up."""
