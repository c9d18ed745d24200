"""What every upstream room shares: how it is opened (`opening`), and one ladder from an error answer's status
to the error tree (`ladder`)."""
