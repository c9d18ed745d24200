"""What every upstream room shares: one ladder from an error answer's status to the error tree."""
