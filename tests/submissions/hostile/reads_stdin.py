# hostile: waits for input on stdin while being imported
# expect: score == 0
# reason: EOFError
answer = input("expected values, please: ")
